package smtpclient

import (
	"bytes"
	"strings"
	"testing"
)

func TestDowngradeSinglePart(t *testing.T) {
	in := "Subject: caf\xc3\xa9\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9 = ok\r\n.dot\r\n"
	want := "Subject: caf\xc3\xa9\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =3D ok\r\n.dot\r\n"
	if got := string(Downgrade([]byte(in))); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	// No MIME headers at all: text/plain by RFC 2045's default, labelled
	// now.
	in = "Subject: x\r\n\r\n\xe9t\xe9\r\n"
	want = "Subject: x\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=E9t=E9\r\n"
	if got := string(Downgrade([]byte(in))); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	// 7-bit content is left alone.
	in = "Subject: x\r\n\r\nplain\r\n"
	if got := string(Downgrade([]byte(in))); got != in {
		t.Errorf("7-bit changed: %q", got)
	}
}

func TestDowngradeMultipart(t *testing.T) {
	in := "MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"\r\n" +
		"preamble\r\n" +
		"--b1\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"\xc3\xa9\r\n" +
		"--b1\r\n" +
		"Content-Type: application/octet-stream\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"\r\n" +
		"AAAA\r\n" +
		"--b1\r\n" +
		"Content-Type: message/rfc822\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"\r\n" +
		"Subject: inner\r\n" +
		"\r\n" +
		"\xc3\xbc\r\n" +
		"--b1--\r\n" +
		"epilogue\r\n"
	want := "MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
		"Content-Transfer-Encoding: 7bit\r\n" +
		"\r\n" +
		"preamble\r\n" +
		"--b1\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n" +
		"\r\n" +
		"=C3=A9\r\n" +
		"--b1\r\n" +
		"Content-Type: application/octet-stream\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"\r\n" +
		"AAAA\r\n" +
		"--b1\r\n" +
		"Content-Type: message/rfc822\r\n" +
		"Content-Transfer-Encoding: 7bit\r\n" +
		"\r\n" +
		"Subject: inner\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n" +
		"\r\n" +
		"=C3=BC\r\n" +
		"--b1--\r\n" +
		"epilogue\r\n"
	if got := string(Downgrade([]byte(in))); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// FuzzDowngrade: any message downgrades without a fault, 7-bit input is
// returned unchanged, a second downgrade changes nothing, and a
// single-part text body with an identity encoding comes out 7-bit.
func FuzzDowngrade(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\n\xe9t\xe9\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n\xff\r\n--b--\r\n"))
	f.Add([]byte("Content-Type: message/rfc822\r\n\r\nSubject: y\r\n\r\n\xc3\xa9\r\n"))
	f.Add([]byte("Content-Type: multipart/digest; boundary=\"q\"\r\n\r\n--q\r\nSubject: d\r\n\r\n\x80\r\n--q"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out := Downgrade(in)
		if !has8bit(in) && !bytes.Equal(in, out) {
			t.Fatalf("7-bit input changed:\n%q\n%q", in, out)
		}
		if again := Downgrade(out); !bytes.Equal(again, out) {
			t.Fatalf("second downgrade changed it:\n%q\n%q", out, again)
		}
		head, body, _ := splitHeader(in)
		if !bytes.Contains(bytes.ToLower(head), []byte("content-")) && !bytes.Contains(head, []byte{0}) {
			_, outBody, _ := splitHeader(out)
			if has8bit(outBody) && has8bit(body) && len(body) > 0 {
				t.Fatalf("8-bit body left:\n%q\n%q", in, out)
			}
		}
		if strings.Count(string(out), "\n") < strings.Count(string(in), "\n") {
			t.Fatalf("lines lost:\n%q\n%q", in, out)
		}
	})
}
