"""python -m emerge_ehr.data.synthetic OUT --layout mimic4 --patients 200 --seed 1"""

from emerge_ehr.data.synthetic import main

main()
