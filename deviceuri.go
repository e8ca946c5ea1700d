package sphere

import (
	"crypto/x509"
	"net/url"
	"strings"
)

// DeviceURI is the URI SAN that names a device and its tenant in its
// certificate. The service's CA writes it (package ca); the service and
// the agent read it, so it lives here rather than in ca, which the device
// binary does not link.
func DeviceURI(tenantID, deviceID string) *url.URL {
	return &url.URL{Scheme: "urn", Opaque: "opensphere:tenant:" + tenantID + ":device:" + deviceID}
}

// ParseDeviceURI reads tenant and device from a device certificate's URI
// SAN (DeviceURI).
func ParseDeviceURI(c *x509.Certificate) (tenantID, deviceID string, ok bool) {
	for _, u := range c.URIs {
		rest, found := strings.CutPrefix(u.String(), "urn:opensphere:tenant:")
		if !found {
			continue
		}
		t, d, found := strings.Cut(rest, ":device:")
		if found && t != "" && ValidateDeviceID(d) == nil {
			return t, d, true
		}
	}
	return "", "", false
}
