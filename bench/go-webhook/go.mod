module overthere.dev/bench/go-webhook

go 1.19
