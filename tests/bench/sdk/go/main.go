// The Go client's side of the SDK round-trip benchmark (tests/bench/sdk/run.sh).
//
//	go run . <leverd host:port> <calls>
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	lever "github.com/leveros/lever/sdk/go"
)

func main() {
	addr := os.Args[1]
	n, _ := strconv.Atoi(os.Args[2])
	client := lever.NewClient()
	client.ForceHost = addr
	defer client.Close()
	ep := client.Service("dev.lever", "helloService")
	ctx := context.Background()
	var reply string
	for i := 0; i < 200; i++ {
		if err := ep.Invoke(ctx, &reply, "sayHello", "warm"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	us := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		_ = ep.Invoke(ctx, &reply, "sayHello", "world")
		us = append(us, float64(time.Since(t0).Microseconds()))
	}
	sort.Float64s(us)
	var started atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r string
			for started.Add(1) <= int64(n) {
				_ = ep.Invoke(ctx, &r, "sayHello", "world")
			}
		}()
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	fmt.Printf("go    sequential p50 %.0f us p99 %.0f us | 64 in flight %.0f calls/s\n", us[len(us)/2], us[len(us)*99/100], float64(n)/secs)
}
