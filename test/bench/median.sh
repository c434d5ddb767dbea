# test/bench/median.sh: median (sourced by the benchmarks): the median of the numbers on stdin, one
# a line (the mean of the two middle ones for an even count).
median() { sort -g | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
