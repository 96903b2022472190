package loadgen

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procStat is a process's CPU time (user and system; systemSeconds of
// it in the kernel) and resident memory, from /proc.
type procStat struct {
	cpuSeconds, systemSeconds float64
	rssBytes                  int64
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

func readProc(pid int) (procStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, fmt.Errorf("loadgen: server process: %w", err)
	}
	// Fields after the command, which is in parentheses and may hold
	// spaces: state is field 3; utime, stime are 14, 15; rss is 24.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 22 {
		return procStat{}, fmt.Errorf("loadgen: /proc/%d/stat: too few fields", pid)
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	rss, _ := strconv.ParseInt(fields[21], 10, 64)
	return procStat{cpuSeconds: (utime + stime) / clockTicks, systemSeconds: stime / clockTicks, rssBytes: rss * int64(os.Getpagesize())}, nil
}
