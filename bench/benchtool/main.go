// Command benchtool is the measuring half of bench/run: it runs
// smtp-source against a server while sampling the server's whole process
// tree from /proc (CPU seconds, peak RSS), waits for delivery to finish,
// and holds idle SMTP connections to measure their memory cost. It prints
// key=value lines that bench/run turns into the results table.
//
// Usage:
//
//	benchtool measure -pid PID [-maildir DIR -sent N] [-queue DIR] -- smtp-source ...
//	benchtool idle -pid PID -addr HOST:PORT -n 1000
//	benchtool report -in RAW
//	benchtool freeport
//	benchtool wait -addr HOST:PORT
//	benchtool relay -pid PID -sinks FILE,... -sent N -queue DIR -- CMD ...
//	benchtool relayreport -in RAW
//	benchtool freeports -addrs 127.0.0.11,...
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool measure|idle|report|freeport|wait|relay|relayreport|freeports [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "measure":
		err = measure(os.Args[2:], os.Stdout)
	case "idle":
		err = idle(os.Args[2:], os.Stdout)
	case "report":
		err = report(os.Args[2:], os.Stdout)
	case "freeport":
		err = freePort(os.Stdout)
	case "wait":
		err = waitListen(os.Args[2:])
	case "relay":
		err = relayMeasure(os.Args[2:], os.Stdout)
	case "relayreport":
		err = relayReport(os.Args[2:], os.Stdout)
	case "freeports":
		err = freePorts(os.Args[2:], os.Stdout)
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}
