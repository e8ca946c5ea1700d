// Package updates is the service side of renewable security: it accepts
// signed image packages and re-signs them with the tenant's key, keeps
// them in the blob store, publishes the platform's OS releases on the
// Retail and RetailEval feeds, runs deployments as rollouts in waves that
// halt by themselves, expresses what each device group should run as TUF
// metadata (package tufrepo), answers devices' update checks, and explains
// to operators why a device is or is not updating.
package updates
