# gnuplot: horizontal bar charts of the tables in docs/benchmarks.md (via tables_to_dat.awk).
set terminal pngcairo size 1000,460 font ",11" noenhanced
set datafile separator "\t"
set style fill solid 0.85 border -1
set grid xtics
set key off
set lmargin 52
set yrange [*:*] reverse
set ytics nomirror
set output 'docs/img/strategies_time.png'
set title 'Step time relative to GradAccum, same N_total (dashed: goals 1.05, 1.40)'
set xlabel 'ratio'
set xrange [0:*]
set arrow 1 from 1.05, graph 0 to 1.05, graph 1 nohead dt 2 lc rgb '#aa3333'
set arrow 2 from 1.40, graph 0 to 1.40, graph 1 nohead dt 2 lc rgb '#aa3333'
plot 'docs/img/strategies_time.dat' using ($2*0.5):0:($2*0.5):(0.35):yticlabels(1) with boxxyerror lc rgb '#4477aa'
unset arrow 1
unset arrow 2
set output 'docs/img/strategies_memory.png'
set title 'Peak memory of a step, N_local = 8 (model, optimizer, bank included)'
set xlabel 'MiB'
plot 'docs/img/strategies_memory.dat' using ($2*0.5):0:($2*0.5):(0.35):yticlabels(1) with boxxyerror lc rgb '#228833'
