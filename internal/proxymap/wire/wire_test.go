package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRequestRoundTrip(t *testing.T) {
	reqs := []Request{
		{Op: OpLookup, Flags: FlagFold | FlagUTF8, Table: "unix:passwd.byname", Key: "root"},
		{Op: OpOpen, Table: "hash:/etc/postfix/virtual"},
		{Op: OpUpdate, Table: "btree:/x", Key: "k", Value: strings.Repeat("v", 300)},
		{Op: OpLookup, Table: "", Key: "\x00bin\xff"},
	}
	var buf bytes.Buffer
	for _, r := range reqs {
		if err := WriteRequest(&buf, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range reqs {
		got, err := ReadRequest(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	if _, err := ReadRequest(&buf); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestReplyRoundTrip(t *testing.T) {
	for _, want := range []Reply{
		{Status: StatusOK, Flags: FlagPattern, Value: "root:x:0:0:root:/root:/bin/bash"},
		{Status: StatusNoKey},
		{Status: StatusDeny},
		{Status: StatusRetry, Value: "open database /x.db: no such file"},
	} {
		var buf bytes.Buffer
		if err := WriteReply(&buf, want); err != nil {
			t.Fatal(err)
		}
		got, err := ReadReply(&buf)
		if err != nil || got != want {
			t.Fatalf("got %+v, %v; want %+v", got, err, want)
		}
	}
}

// TestOversize: the writer refuses a request too big to frame, replaces a
// too-big reply by a temporary failure, and the reader refuses a header
// announcing more than MaxFrame without allocating it.
func TestOversize(t *testing.T) {
	big := strings.Repeat("x", MaxFrame)
	if err := WriteRequest(io.Discard, Request{Op: OpLookup, Key: big}); !errors.Is(err, ErrFrame) {
		t.Fatalf("big request: %v", err)
	}
	var buf bytes.Buffer
	if err := WriteReply(&buf, Reply{Status: StatusOK, Value: big}); err != nil {
		t.Fatal(err)
	}
	r, err := ReadReply(&buf)
	if err != nil || r.Status != StatusRetry {
		t.Fatalf("big reply read back as %+v, %v", r, err)
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff})); !errors.Is(err, ErrFrame) {
		t.Fatalf("huge header: %v", err)
	}
}

func TestMalformed(t *testing.T) {
	for name, p := range map[string][]byte{
		"empty":      {},
		"version":    {9, 'L', 0, 0, 0, 0},
		"short":      {Version, 'L'},
		"overrun":    {Version, 'L', 0, 5, 'a'},
		"trailing":   {Version, 'L', 0, 0, 0, 0, 'z'},
		"missing":    {Version, 'L', 0, 0},
		"bad varint": {Version, 'L', 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		if _, err := DecodeRequest(p); !errors.Is(err, ErrFrame) {
			t.Errorf("%s: DecodeRequest = %v, want ErrFrame", name, err)
		}
	}
	if _, err := DecodeReply([]byte{Version, 7, 0, 0}); !errors.Is(err, ErrFrame) {
		t.Errorf("unknown status accepted: %v", err)
	}
	// A frame cut short is not a clean end.
	frame := AppendRequest(nil, Request{Op: OpLookup, Key: "abc"})
	if _, err := ReadRequest(bytes.NewReader(frame[:len(frame)-1])); err != io.ErrUnexpectedEOF {
		t.Errorf("cut frame: %v", err)
	}
}

// FuzzDecodeRequest: the server's decoder never panics, and whatever it
// accepts encodes back to the same payload.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(AppendRequest(nil, Request{Op: OpLookup, Flags: FlagFold, Table: "unix:passwd.byname", Key: "root"})[4:])
	f.Add(AppendRequest(nil, Request{Op: OpUpdate, Table: "hash:/x", Key: "k", Value: "v"})[4:])
	f.Add([]byte{Version, 'L', 0, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := DecodeRequest(p)
		if err != nil {
			return
		}
		again := AppendRequest(nil, r)[4:]
		r2, err := DecodeRequest(again)
		if err != nil || r2 != r {
			t.Fatalf("round trip of %+v: %+v, %v", r, r2, err)
		}
	})
}

// FuzzDecodeReply: the client's decoder never panics, accepts only known
// statuses, and round-trips what it accepts.
func FuzzDecodeReply(f *testing.F) {
	f.Add(AppendReply(nil, Reply{Status: StatusOK, Value: "root:x:0:0::/root:/bin/sh"})[4:])
	f.Add(AppendReply(nil, Reply{Status: StatusDeny, Flags: FlagPattern})[4:])
	f.Add([]byte{Version, 9, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := DecodeReply(p)
		if err != nil {
			return
		}
		if r.Status > StatusDeny {
			t.Fatalf("accepted status %d", r.Status)
		}
		r2, err := DecodeReply(AppendReply(nil, r)[4:])
		if err != nil || r2 != r {
			t.Fatalf("round trip of %+v: %+v, %v", r, r2, err)
		}
	})
}

// FuzzReadFrame: a stream of arbitrary bytes is read frame by frame
// without panicking or allocating more than MaxFrame per frame.
func FuzzReadFrame(f *testing.F) {
	f.Add(AppendRequest(AppendRequest(nil, Request{Op: OpOpen, Table: "a:b"}), Request{Op: OpLookup}))
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, stream []byte) {
		rd := bytes.NewReader(stream)
		for i := 0; i < 100; i++ {
			p, err := ReadFrame(rd)
			if err != nil {
				return
			}
			if len(p) > MaxFrame {
				t.Fatalf("frame of %d bytes", len(p))
			}
			_, _ = DecodeRequest(p)
			_, _ = DecodeReply(p)
		}
	})
}
