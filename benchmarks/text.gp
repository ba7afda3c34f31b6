# Bar chart of docs/img/text_throughput.dat (written by benchmarks/text_report.py).
set terminal pngcairo size 1250,480 font "sans,10" noenhanced
set output "docs/img/text_throughput.png"
set title "contaccum throughput / Python reference (same CPU, same files); 1.0 = parity"
set style fill solid 0.8 border -1
set boxwidth 0.6
set yrange [0:*]
set offsets 0,0,1,0
set ylabel "ratio (higher is faster)"
set xtics scale 0 font ",9" rotate by -20 left
set bmargin 6
set grid ytics
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "red"
plot "docs/img/text_throughput.dat" using 1:3:xtic(2) with boxes lc rgb "#4477aa" notitle, \
     "" using 1:3:(sprintf("%.2fx", $3)) with labels offset 0,0.7 notitle
