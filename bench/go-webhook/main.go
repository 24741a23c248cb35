// The exec target's yardstick: a Go webhook server (what adnanh/webhook does
// per hook call, minus its config matching) that runs the posted command with
// os/exec, waits for it and answers with its output and exit code. No record
// of the run is kept. `pnpm bench http` builds and loads it beside the agent
// when a Go toolchain is on PATH.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
)

func main() {
	http.HandleFunc("/hooks/run", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Command []string `json:"command"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Command) == 0 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		out, err := exec.Command(body.Command[0], body.Command[1:]...).CombinedOutput()
		code := 0
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			code = exitErr.ExitCode()
		} else if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"output": string(out), "exitCode": code})
	})
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on http://%s\n", listener.Addr())
	if err := http.Serve(listener, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
