# moat's build and test entry points. `make test` is what CI runs.
GO ?= go
STATICCHECK ?= $(shell command -v staticcheck || echo $$($(GO) env GOPATH)/bin/staticcheck)

.PHONY: build run test check unit fuzz install

build:
	CGO_ENABLED=0 $(GO) build -o bin/moat ./cmd/moat

# Run moat in the foreground on the bundled development configuration
# (examples/dev: 127.0.0.1 ports 2525, 2587, 2465; queue, mail and log
# under ./var, relative to this directory). Ctrl-C stops it.
# The TLS services need a certificate: a self-signed RSA and ECDSA pair is
# made under var/tls on the first run (keys mode 0600, as admins keep them).
run: build
	mkdir -p var/spool var/log var/tls
	@test -s var/tls/rsa.pem || (umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
	  -subj /CN=mx.moat.test -addext subjectAltName=DNS:mx.moat.test,DNS:localhost \
	  -keyout var/tls/rsa.key -out var/tls/rsa.pem 2>/dev/null)
	@test -s var/tls/ec.pem || (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
	  -subj /CN=mx.moat.test -addext subjectAltName=DNS:mx.moat.test,DNS:localhost \
	  -keyout var/tls/ec.key -out var/tls/ec.pem 2>/dev/null)
	@test -s var/sasl_passwd || echo devpass | ./bin/moat saslpasswd -t texthash:var/sasl_passwd -p dev@moat.test
	./bin/moat postfix -c examples/dev start-fg

# Install every test dependency, then run every check and test.
test:
	./scripts/test-deps
	$(MAKE) check unit

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# -parallel 8: the differential suites mostly wait on Postfix's tools
# (which sleep after fatal errors), so more parallel subtests than cores
# shortens the run without more CPU.
unit:
	$(GO) test -count=1 -parallel 8 -timeout 15m ./...

# Run every fuzz target for FUZZTIME each (default 2m).
FUZZTIME ?= 2m
fuzz:
	./scripts/fuzz $(FUZZTIME)

install: build
	install -d $(DESTDIR)/usr/sbin
	install -m 0755 bin/moat $(DESTDIR)/usr/sbin/moat
	for c in postfix postconf postmap postalias newaliases postqueue mailq postsuper postcat sendmail; do ln -sf moat $(DESTDIR)/usr/sbin/$$c; done
	# postdrop is a real copy, set-group-ID setgid_group (docs/SUBMISSION.md):
	# the links above stay unprivileged. install(1) copies to a temporary
	# name and renames, so a running postdrop is never overwritten in place.
	install -m 2755 -g postdrop bin/moat $(DESTDIR)/usr/sbin/postdrop
