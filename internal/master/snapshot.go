package master

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"moat/internal/config"
	"moat/internal/mastercf"
)

// snapshot is one reading of main.cf and master.cf: what start builds the
// first generation from and what each reload builds the next one from.
type snapshot struct {
	cfg      *config.Config
	inet     []*serviceSpec // inet rows, in master.cf order
	skipped  []*mastercf.Service
	queueDir string // absolute
}

// serviceSpec is one master.cf inet row resolved: its own parameter view
// (main.cf with the row's -o overrides), its sockets and its limit.
type serviceSpec struct {
	row      *mastercf.Service
	key      string // "name/type": a service's identity across reloads
	internal string // Postfix's internal endpoint name, for the limit warning
	cfg      *config.Config
	maxproc  int
	eps      []endpoint
	factory  ServerFactory
}

// loadSnapshot reads and checks the configuration in dir as strictly as
// config.Load does, plus master.cf and every -o override, so a start or
// reload never runs a configuration `postfix check` would refuse. ifs is
// nil at start (inet_interfaces is read now) and the start-time value on
// reload, which keeps it (master(8) ignores an inet_interfaces change
// until the next start).
func loadSnapshot(ctx context.Context, dir, cwd string, servers map[string]ServerFactory, fixed *interfaces, fixedProto *protocols, lookup resolver) (*snapshot, interfaces, protocols, error) {
	cfg, err := config.Load(dir)
	if err != nil {
		return nil, interfaces{}, protocols{}, err
	}
	mpath := filepath.Join(dir, "master.cf")
	mf, err := mastercf.Load(mpath)
	if err != nil {
		return nil, interfaces{}, protocols{}, err
	}
	if err := checkCommands(mpath, mf); err != nil {
		return nil, interfaces{}, protocols{}, err
	}
	for _, s := range mf.Services {
		cfg.AddServiceParams(s.Name, s.Command)
	}
	var errs []error
	for _, s := range mf.Services {
		for _, ov := range s.Overrides {
			if err := cfg.CheckOverride(ov.Name, ov.Value); err != nil {
				errs = append(errs, fmt.Errorf("%s, line %d: service %s/%s: %v", mpath, ov.Line, s.Name, s.Type, err))
			}
		}
	}
	if len(errs) > 0 {
		return nil, interfaces{}, protocols{}, errors.Join(errs...)
	}

	var proto protocols
	var ifs interfaces
	if fixedProto != nil {
		proto = *fixedProto
	} else {
		words, err := cfg.List("inet_protocols")
		if err != nil {
			return nil, ifs, proto, err
		}
		if proto, err = parseProtocols(words); err != nil {
			return nil, ifs, proto, fmt.Errorf("file %s: %w", cfg.Path, err)
		}
		proto = probeIPv6(proto)
	}
	if fixed != nil {
		ifs = *fixed
	} else {
		words, err := cfg.List("inet_interfaces")
		if err != nil {
			return nil, ifs, proto, err
		}
		if ifs, err = resolveInterfaces(ctx, words, proto, lookup); err != nil {
			return nil, ifs, proto, fmt.Errorf("file %s: %w", cfg.Path, err)
		}
	}

	qdir := cfg.Get("queue_directory")
	if qdir == "" {
		return nil, ifs, proto, fmt.Errorf("file %s: parameter queue_directory is empty", cfg.Path)
	}
	if !filepath.IsAbs(qdir) {
		// master(8) chdir()s to queue_directory from where it was started.
		qdir = filepath.Join(cwd, qdir)
	}
	snap := &snapshot{cfg: cfg, queueDir: qdir}
	defProc, err := cfg.Int("default_process_limit")
	if err != nil {
		return nil, ifs, proto, err
	}
	for _, s := range mf.Services {
		if s.Type != "inet" {
			snap.skipped = append(snap.skipped, s)
			continue
		}
		where := fmt.Sprintf("%s, line %d: service %s/%s", mpath, s.Line, s.Name, s.Type)
		if s.Private != "n" {
			// master_ent.c: "inet service cannot be private".
			return nil, ifs, proto, fmt.Errorf("%s: inet service cannot be private (set the private column to n)", where)
		}
		f, ok := servers[s.Command]
		if !ok {
			return nil, ifs, proto, fmt.Errorf("%s: command %q is not a server moat can run on an inet service (known: %s)", where, s.Command, knownServers(servers))
		}
		maxproc := int(defProc)
		if s.Maxproc != "-" {
			n, err := strconv.Atoi(s.Maxproc)
			if err != nil || n < 0 {
				return nil, ifs, proto, fmt.Errorf("%s: bad maxproc %q (a number, 0 for no limit, or - for default_process_limit)", where, s.Maxproc)
			}
			maxproc = n
		}
		eps, internal, err := endpoints(ctx, s.Name, ifs, proto, lookup)
		if err != nil {
			return nil, ifs, proto, fmt.Errorf("%s: %v", where, err)
		}
		snap.inet = append(snap.inet, &serviceSpec{
			row: s, key: s.Name + "/" + s.Type, internal: internal,
			cfg: cfg.WithOverrides(s.DaemonOverrides()), maxproc: maxproc,
			eps: eps, factory: f,
		})
	}
	if err := uniqueEndpoints(snap.inet); err != nil {
		return nil, ifs, proto, err
	}
	return snap, ifs, proto, nil
}

// uniqueEndpoints refuses two services on one socket, which would
// otherwise fail as "address already in use" with no hint of the cause.
func uniqueEndpoints(specs []*serviceSpec) error {
	owner := map[string]*serviceSpec{}
	for _, s := range specs {
		for _, e := range s.eps {
			if o, ok := owner[e.Key()]; ok && o != s {
				return fmt.Errorf("master.cf, line %d: service %s listens on %s, as does line %d: service %s", s.row.Line, s.key, e.Addr, o.row.Line, o.key)
			}
			owner[e.Key()] = s
		}
	}
	return nil
}

func knownServers(m map[string]ServerFactory) string {
	names := slices.Sorted(maps.Keys(m))
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
