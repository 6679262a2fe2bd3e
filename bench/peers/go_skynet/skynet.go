// skynet: the classic goroutine benchmark (github.com/atemerev/skynet), the Go peer of bench/skynet (tern-skynet).
//
// A tree of 1,000,000 goroutines with fan-out 10: each leaf sends its ordinal on an unbuffered channel, each inner
// node sums its ten children's values and sends the sum up. The root prints the sum of 0..999999. Five rounds, each
// printing the same line as tern-skynet so that bench/skynet.sh can compare the two:
//
//	Result: 499999500000 in 312 ms.
//
// GOMAXPROCS (the environment variable) sets the processor count, as --procs does for tern-skynet.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func skynet(c chan<- int64, num, size, div int64) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan int64)
	var sum int64
	for i := int64(0); i < div; i++ {
		subNum := num + i*(size/div)
		go skynet(rc, subNum, size/div, div)
	}
	for i := int64(0); i < div; i++ {
		sum += <-rc
	}
	c <- sum
}

func main() {
	rounds := flag.Int("rounds", 5, "rounds to run")
	size := flag.Int64("size", 1000000, "leaves in the tree (a power of the fan-out)")
	div := flag.Int64("fanout", 10, "children per node")
	flag.Parse()
	if *rounds < 1 || *size < 1 || *div < 2 {
		fmt.Fprintln(os.Stderr, "skynet: --rounds and --size must be >= 1, --fanout >= 2")
		os.Exit(2)
	}
	for r := 0; r < *rounds; r++ {
		c := make(chan int64)
		start := time.Now()
		go skynet(c, 0, *size, *div)
		result := <-c
		fmt.Printf("Result: %d in %d ms.\n", result, time.Since(start).Milliseconds())
	}
}
