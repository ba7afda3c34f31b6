# Turns the tables of docs/benchmarks.md into tab-separated plot data, so the plots show
# exactly the numbers in the tables.  Usage: awk -v what=time|memory -f tables_to_dat.awk docs/benchmarks.md
BEGIN { FS = "|" }
/^## Time per/   { section = "time" }
/^## Peak memory/ { section = "memory" }
section == what && /^\| / && $2 !~ /comparison|strategy|---/ {
  for (i = 2; i <= NF; ++i) gsub(/^ +| +$|\*/, "", $i)
  if (what == "time") { printf "%s, N=%s\t%s\n", $4, $3, $6 }
  else                { printf "%s, N=%s\t%s\n", $2, $3, $4 }
}
