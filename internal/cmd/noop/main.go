// Command noop starts and exits at once. It is the floor of the benchmark
// (internal/cmd/bench): built like the plugins (static Go, CGO_ENABLED=0),
// the time to start and finish it is what any Go plugin pays before it does
// any work.
package main

func main() {}
