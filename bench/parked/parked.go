// bench/parked/parked.go: the Go side of bench/parked.sh, the same program as parked.cc with goroutines: N goroutines
// each write a 1 KiB local array, report started on one WaitGroup and park on another; the program prints the time
// to spawn and park them all and the resident memory they added, per goroutine, in the line parked.cc prints:
//
//	parked n=200000 spawn_park_ms=2700 cpu_ms=... rss_before_kb=... rss_parked_kb=... bytes_per_fiber=2724 pte_bytes_per_fiber=5
//
// cpu_ms is the process's CPU time (user + system) over the spawning and parking.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The bytes of stack each goroutine writes, as parked.cc's fibers do.
const touchBytes = 1024

// Time for the last goroutine between its started.Done() and parking on release: RSS is read after it.
const settle = 100 * time.Millisecond

// A field of /proc/self/status (VmRSS, VmPTE), in KiB.
func statusKB(name string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), name+":") {
			v, err := strconv.ParseInt(strings.Fields(s.Text())[1], 10, 64)
			if err != nil {
				panic(err)
			}
			return v
		}
	}
	panic("no " + name + " in /proc/self/status")
}

// The process's CPU time, user + system, in ms.
func cpuMs() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return (ru.Utime.Nano() + ru.Stime.Nano()) / 1e6
}

//go:noinline
func touch(sink *int64) {
	var buf [touchBytes]byte
	for i := range buf {
		buf[i] = byte(i)
	}
	*sink += int64(buf[touchBytes-1])
}

func main() {
	n := flag.Int("n", 200000, "goroutines to park")
	flag.Parse()
	fmt.Fprintf(os.Stderr, "GOMAXPROCS=%d\n", runtime.GOMAXPROCS(0))
	var started, release, finished sync.WaitGroup
	sinks := make([]int64, *n)
	runtime.GC()
	before, pteBefore := statusKB("VmRSS"), statusKB("VmPTE")
	cpu0 := cpuMs()
	t0 := time.Now()
	started.Add(*n)
	finished.Add(*n)
	release.Add(1)
	for i := 0; i < *n; i++ {
		go func(i int) {
			touch(&sinks[i])
			started.Done()
			release.Wait()
			finished.Done()
		}(i)
	}
	started.Wait()
	ms := time.Since(t0).Milliseconds()
	cpu := cpuMs() - cpu0
	time.Sleep(settle)
	parked, pteParked := statusKB("VmRSS"), statusKB("VmPTE")
	release.Done()
	finished.Wait()
	fmt.Printf("parked n=%d spawn_park_ms=%d cpu_ms=%d rss_before_kb=%d rss_parked_kb=%d bytes_per_fiber=%d "+
		"pte_bytes_per_fiber=%d\n", *n, ms, cpu, before, parked, (parked-before)*1024/int64(*n),
		(pteParked-pteBefore)*1024/int64(*n))
}
