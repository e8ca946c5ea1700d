package api

import "time"

// The device's update check (POST /device/v1/updates/check): what it
// reports running and what the service offers. They are named after the
// check, not "UpdateX" alone, which in this package is a request to change
// X (UpdateDevice). Package updates names them Component, Report,
// CheckResult and Target.

// UpdateCheckComponent is one thing a device reports running.
type UpdateCheckComponent struct {
	ComponentID     string `json:"component_id"`
	Kind            string `json:"kind"`
	ImageID         string `json:"image_id"`
	Version         string `json:"version"`
	SecurityVersion uint32 `json:"security_version"`
}

// UpdateCheckReport is what a device says when it checks for updates.
type UpdateCheckReport struct {
	Components []UpdateCheckComponent `json:"components"`
	// LastUpdate is where its latest install stands: "", "downloading",
	// "installed", "failed" or "rolled_back", with LastError saying why it
	// failed.
	LastUpdate   string `json:"last_update,omitempty"`
	LastError    string `json:"last_error,omitempty"`
	DeploymentID string `json:"deployment_id,omitempty"` // the deployment LastUpdate belongs to
	// LastUpdateAt is when LastUpdate ended (installed, failed, rolled back).
	LastUpdateAt time.Time `json:"last_update_at,omitzero"`
}

// UpdateCheckResult tells a device what to run.
type UpdateCheckResult struct {
	DeploymentID string              `json:"deployment_id,omitempty"`
	Targets      []UpdateCheckTarget `json:"targets"`
	// Reasons say why nothing (or less) is offered, for the agent's logs.
	Reasons []string `json:"reasons,omitempty"`
}

// UpdateCheckTarget is one file a device may fetch through TUF, with what
// the device needs to decide about it.
type UpdateCheckTarget struct {
	Path            string `json:"path"` // TUF target path: groups/<group id>/<image id>.pkg
	ImageID         string `json:"image_id"`
	Kind            string `json:"kind"`
	ComponentID     string `json:"component_id"`
	Name            string `json:"name"`
	Version         string `json:"version"`
	SecurityVersion uint32 `json:"security_version"`
	SHA256          string `json:"sha256"`
	Size            int64  `json:"size"`
	// OSRelease is true for the platform's OS release of the group's feed.
	OSRelease bool `json:"os_release,omitempty"`
}
