"""Master patient index, staff/organization/device identity, and the care graph."""
