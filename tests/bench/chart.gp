# The benchmark chart, drawn by tests/bench/run.sh from the TSV files the benchmarks write:
#   gnuplot -e "dir='DIR'; out='chart.svg'; title='...'" tests/bench/chart.gp
# DIR holds floor.dat, contention.tsv and handoff.tsv. Set png=1 for a PNG (pngcairo) instead.
if (!exists("png")) png = 0
if (png) { set terminal pngcairo size 1500,560 font "Sans,11" } else { set terminal svg size 1500,560 dynamic font "Sans,12" background "white" }
set output out
set datafile separator "\t"
set multiplot layout 1,3 title title font ",14"
set key below Left reverse samplen 2 maxcols 2 height 1
set bmargin 7
set grid ytics lc rgb "#dddddd"
set border 3
set tics nomirror

# 1. The floor: median latency per operation, raw hiredis and process-lock; whiskers to p99.
set title "Library against raw hiredis (bar = median, whisker = p99;\nlabel = ratio of rates, library ÷ raw)"
set ylabel "latency per operation (µs, log scale)"
set logscale y 10
set yrange [10:*]
set style data histograms
set style histogram errorbars gap 2 lw 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics scale 0
plot dir."/floor.dat" using 2:2:3:xtic(1) title "raw hiredis" lc rgb "#9e9e9e", \
     "" using 4:4:5 title "process-lock" lc rgb "#1f77b4", \
     "" using ($0):(($3 > $5 ? $3 : $5) * 1.6):(sprintf("%.2f", $6)) with labels notitle font ",11"

# 2. Contention: critical sections per second, and Jain's fairness index.
unset style
set style data linespoints
set title "P processes on one lock (try\\_lock\\_for, work, clear)"
set xlabel "processes"
set ylabel "critical sections per second"
unset logscale y
set logscale x 2
set xrange [0.8:40]
set xtics (1, 2, 8, 32)
set yrange [0:*]
set y2label "Jain's fairness index"
set y2range [0:1.05]
set y2tics 0.2 nomirror
set border 11
plot dir."/contention.tsv" using 1:2 title "critical sections/s" lw 2 pt 7 ps 1.2 lc rgb "#1f77b4", \
     "" using 1:8 axes x1y2 title "Jain's index (right)" lw 2 pt 5 ps 1.2 dt 2 lc rgb "#d62728"

# 3. Hand-off: lock free between holders.
unset y2label
unset y2tics
set border 3
set title "Hand-off: time the lock sits free between holders"
set xlabel "waiters"
set xtics (1, 8, 32)
set ylabel "milliseconds (log scale)"
set logscale y 10
set yrange [*:*]
plot dir."/handoff.tsv" every ::1 using 1:2 title "after clear(): median" lw 2 pt 7 lc rgb "#1f77b4", \
     "" every ::1 using 1:3 title "after clear(): p99" lw 2 pt 7 dt 2 lc rgb "#1f77b4", \
     "" every ::1 using 1:4 title "at expiry: median" lw 2 pt 5 lc rgb "#ff7f0e", \
     "" every ::1 using 1:5 title "at expiry: p99" lw 2 pt 5 dt 2 lc rgb "#ff7f0e"
unset multiplot
