package mtasts

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// cacheRecord is one domain's policy on disk: the policy text as served
// (re-parsed on reading, so a file edited by hand or damaged cannot smuggle
// in what the parser would refuse), the TXT id and the fetch time that
// max_age counts from (RFC 8461 §5.1).
type cacheRecord struct {
	Domain  string    `json:"domain"`
	ID      string    `json:"id"`
	Fetched time.Time `json:"fetched"`
	Policy  string    `json:"policy"`
}

// loadFile reads domain's cached policy from the cache directory; no file
// is (nil, nil).
func (s *Source) loadFile(domain string) (*Policy, error) {
	if s.dir == "" {
		return nil, nil
	}
	path := filepath.Join(s.dir, domain)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("MTA-STS cache: %w", err)
	}
	var rec cacheRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("MTA-STS cache %s: %w", path, err)
	}
	if rec.Domain != domain || !validID(rec.ID) {
		return nil, fmt.Errorf("MTA-STS cache %s: domain or id does not match", path)
	}
	p, err := ParsePolicy(rec.Policy)
	if err != nil {
		return nil, fmt.Errorf("MTA-STS cache %s: %w", path, err)
	}
	p.Domain, p.ID, p.Fetched = domain, rec.ID, rec.Fetched
	return p, nil
}

// storeFile writes p as its domain's cache file atomically (a temporary
// file, fsync, rename, directory fsync), so a crash leaves the old policy
// or the new one, never half of one.
func (s *Source) storeFile(p *Policy) error {
	if s.dir == "" {
		return nil
	}
	data, err := json.Marshal(cacheRecord{Domain: p.Domain, ID: p.ID, Fetched: p.Fetched, Policy: p.Text})
	if err != nil {
		return fmt.Errorf("MTA-STS cache: %w", err)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("MTA-STS cache: %w", err)
	}
	f, err := os.CreateTemp(s.dir, "."+p.Domain+".*.tmp")
	if err != nil {
		return fmt.Errorf("MTA-STS cache: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, p.Domain))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("MTA-STS cache: %w", err)
	}
	if d, err := os.Open(s.dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("MTA-STS cache: sync %s: %w", s.dir, err)
		}
	}
	return nil
}
