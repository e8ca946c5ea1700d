package agent

import "github.com/opensphere/sphere"

// TenantID is the tenant named in the current device certificate; "" while
// the device has none.
func (a *Agent) TenantID() string {
	c := a.Certificate()
	if c == nil {
		return ""
	}
	t, _, _ := sphere.ParseDeviceURI(c)
	return t
}
