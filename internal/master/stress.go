package master

import "sync"

// stressState is a child's stress mode (master(8), STRESS_README): on
// when the service reaches its maxproc, so that sessions accepted from
// then on run with stress=yes and every ${stress?...} parameter takes
// its overload value (smtpd_timeout 10s, smtpd_hard_error_limit 1, ...);
// off again once fewer than half of maxproc sessions remain. Postfix
// keeps stress on for the life of the processes started under load; moat
// has one process per service, so it decides per session instead.
// Loopback clients are not exempt (Postfix exempts loopback listeners).
type stressState struct {
	mu sync.Mutex
	on bool
}

func (st *stressState) active() bool {
	if st == nil {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.on
}

// stressOn turns stress mode on for a service at its limit.
func (m *master) stressOn(s *service) {
	if m.stress == nil || s.stressed == nil {
		return
	}
	m.stress.mu.Lock()
	was := m.stress.on
	m.stress.on = true
	m.stress.mu.Unlock()
	if !was {
		m.log.Info("service %s: stress mode on: new sessions run with stress=yes", s.spec.row.Name)
	}
}

// stressOff turns stress mode off once load has dropped below half of
// maxproc (strictly, so that a client waiting for the slot just freed is
// still served under stress).
func (m *master) stressOff(s *service) {
	if m.stress == nil || s.stressed == nil {
		return
	}
	n, max := s.lim.load()
	if n >= max/2 {
		return
	}
	m.stress.mu.Lock()
	was := m.stress.on
	m.stress.on = false
	m.stress.mu.Unlock()
	if was {
		m.log.Info("service %s: stress mode off", s.spec.row.Name)
	}
}
