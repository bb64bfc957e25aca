package maps

// Placeholders replaced by the real implementations.

func openRegexp(name string, opts Options) (Table, error) { return nil, errNotYet }
func openPCRE(name string, opts Options) (Table, error)   { return nil, errNotYet }
func openCIDR(name string, opts Options) (Table, error)   { return nil, errNotYet }
