#!/bin/sh
# Sample device registry for Riverside General's ICU 4: bedside monitors reached through a
# terminal server, placed in their beds. Run once against the production settings:
#   set -a; . deploy/hospital/riverside.env; set +a; sh deploy/hospital/devices.sh
set -eu

caregraph device add ICU4-MON-01 --protocol intellivue --port /dev/ttyUSB0 \
  --name 'ICU 4 bed 1 monitor' --manufacturer Philips --model MX800 --location ICU4-B01
caregraph device add ICU4-MON-02 --protocol intellivue --port /dev/ttyUSB1 \
  --name 'ICU 4 bed 2 monitor' --manufacturer Philips --model MX800 --location ICU4-B02
caregraph device add ICU4-MON-03 --protocol datex --port /dev/ttyUSB2 \
  --name 'ICU 4 bed 3 monitor' --manufacturer 'GE Healthcare' --model 'Carescape B850' \
  --location ICU4-B03
caregraph device add ICU4-VENT-01 --protocol medibus --port /dev/ttyUSB3 \
  --name 'ICU 4 bed 1 ventilator' --manufacturer Draeger --model 'Evita V800' --location ICU4-B01
caregraph device add LAB-CHEM-01 --protocol astm --port /dev/ttyUSB4 \
  --name 'Core lab chemistry analyzer' --type analyzer
