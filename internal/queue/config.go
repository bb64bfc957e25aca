package queue

import "moat/internal/config"

// OptionsFromConfig returns the Options that main.cf implies: the hashed
// queues and their depth (postconf(5) hash_queue_names, hash_queue_depth).
// Every program that opens the queue must use the same ones, or it looks
// for messages in the wrong subdirectory. Owner and Create stay the
// caller's choice.
func OptionsFromConfig(cfg *config.Config) (Options, error) {
	var opts Options
	names, err := cfg.List("hash_queue_names")
	if err != nil {
		return opts, err
	}
	opts.HashQueues = names
	depth, err := cfg.Int("hash_queue_depth")
	if err != nil {
		return opts, err
	}
	opts.HashDepth = int(depth)
	return opts, nil
}
