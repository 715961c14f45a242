# Shared by the benchmark scripts (sourced, not run).

secs() { # best wall time of N runs of a command, in seconds
  local n=$1; shift; local best=""
  for _ in $(seq "$n"); do
    local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
    best=$(python3 -c "b='$best'; t=$t1-$t0; print(t if not b else min(float(b), t))")
  done
  echo "$best"
}

cpu_secs() { # least CPU time (user + system, all threads) of N runs, in seconds
  python3 - "$@" <<'PY'
import resource, subprocess, sys
n, cmd = int(sys.argv[1]), sys.argv[2:]
best = None
for _ in range(n):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    best = t if best is None else min(best, t)
print(best)
PY
}
