module tern/bench/peers/go_http

go 1.19
