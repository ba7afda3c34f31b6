# gnuplot: bar charts from docs/img/strategies.dat (written by bench_strategies).
set terminal pngcairo size 900,420 font ",11"
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.7
set grid ytics
set key off
set xtics nomirror
set output 'docs/img/strategies_time.png'
set title 'Time per optimizer step, relative to GradAccum at the same N_total'
set ylabel 'ratio'
plot 'docs/img/strategies.dat' using 3:xtic(1) lc rgb '#4477aa', 1 with lines lc rgb '#aa3333' dt 2
set output 'docs/img/strategies_memory.png'
set title 'Peak memory per optimizer step (N_local = 8)'
set ylabel 'MiB'
plot 'docs/img/strategies.dat' using 4:xtic(1) lc rgb '#228833'
