package sphere

import (
	"crypto/x509"
	"net/url"
	"strings"
	"testing"
)

var deviceURISeeds = []string{
	"urn:opensphere:tenant:t1:device:" + strings.Repeat("ab", 32),
	"URN:opensphere:tenant:t1:device:" + strings.Repeat("ab", 32),
	"urn:opensphere:tenant:t1:device:" + strings.Repeat("ab", 32) + "?x=1",
	"urn:opensphere:tenant:t1:device:" + strings.Repeat("ab", 32) + "#f",
	"urn:opensphere:tenant::device:" + strings.Repeat("ab", 32),
	"urn:opensphere:tenant:t1:device:" + strings.Repeat("AB", 32),
	"urn://opensphere:tenant:t1:device:" + strings.Repeat("ab", 32),
	"urn:opensphere:tenant:t%31:device:" + strings.Repeat("ab", 32),
	"spiffe://example.org/device",
	"urn:opensphere:tenant:a:device:b:device:" + strings.Repeat("ab", 32),
}

// checkDeviceURI: a URI that a client's certificate may carry either names
// no device, or names a tenant and a valid device id that DeviceURI writes
// back as exactly that URI.
func checkDeviceURI(t *testing.T, raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		return
	}
	tenant, dev, ok := ParseDeviceURI(&x509.Certificate{URIs: []*url.URL{u}})
	if !ok {
		return
	}
	if tenant == "" || ValidateDeviceID(dev) != nil {
		t.Errorf("%q: read tenant %q, device %q", raw, tenant, dev)
	}
	if back := DeviceURI(tenant, dev).String(); back != u.String() {
		t.Errorf("%q: read (%q, %q), which DeviceURI writes as %q", raw, tenant, dev, back)
	}
}

// TestParseDeviceURI: what the CA writes is read back, among other URIs;
// URIs with a query, a fragment, an empty tenant, an invalid device id or
// another shape name no device.
func TestParseDeviceURI(t *testing.T) {
	dev := strings.Repeat("ab", 32)
	c := &x509.Certificate{URIs: []*url.URL{{Scheme: "https", Host: "example.org"}, DeviceURI("t1", dev)}}
	if tn, d, ok := ParseDeviceURI(c); !ok || tn != "t1" || d != dev {
		t.Errorf("ParseDeviceURI(DeviceURI) = %q, %q, %v", tn, d, ok)
	}
	for i, raw := range deviceURISeeds {
		u, err := url.Parse(raw)
		if err != nil {
			continue // x509 refuses such a certificate before we see it
		}
		_, _, ok := ParseDeviceURI(&x509.Certificate{URIs: []*url.URL{u}})
		// The first two name a device, and so does an escaped tenant id,
		// taken as it is written (no tenant has such an id).
		if want := i < 2 || strings.Contains(raw, "%31"); ok != want {
			t.Errorf("%q: ok = %v, want %v", raw, ok, want)
		}
		checkDeviceURI(t, raw)
	}
}

func FuzzParseDeviceURI(f *testing.F) {
	for _, s := range deviceURISeeds {
		f.Add(s)
	}
	f.Fuzz(checkDeviceURI)
}
