"""The edge: serial drivers, the MLLP listener, the DICOM SCP and device simulators."""
