// go-http: Go's net/http server answering what bench/echo.sh asks of tern-echo, as Go programs usually write it.
//
//	go-http -listen 127.0.0.1:8082
//
// GET /health answers "OK\n" and POST /echo the request body, with the same Content-Type as tern-echo. GOMAXPROCS is
// Go's default (the CPUs this process may run on), the same processor count tern-echo's --procs auto picks.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

// maxBody matches tern-echo's default --max-body.
const maxBody = 1 << 20

var ok = []byte("OK\n")

func main() {
	listen := flag.String("listen", "127.0.0.1:8082", "HOST:PORT")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(ok)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, "Content Too Large", http.StatusRequestEntityTooLarge)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	})
	log.Fatal(http.ListenAndServe(*listen, mux))
}
