module moat

go 1.26.8

require (
	github.com/miekg/dns v1.1.73
	golang.org/x/crypto v0.58.0
)

require (
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
