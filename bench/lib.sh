# Shared by the benchmark scripts (sourced, not run).

timed() { # N runs of a command: "best-wall-seconds least-cpu-seconds"
  # (CPU = user + system of all its threads)
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
n, cmd = int(sys.argv[1]), sys.argv[2:]
wall = cpu = None
for _ in range(n):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    w = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    c = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    wall = w if wall is None else min(wall, w)
    cpu = c if cpu is None else min(cpu, c)
print(wall, cpu)
PY
}

secs() { # best wall time of N runs of a command, in seconds
  local t; t=$(timed "$@"); echo "${t%% *}"
}
