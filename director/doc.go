// Package director will hold the Go LVS-DR director (issue 4): config, IPVS
// reconcile, the fwmark loop guard, VRRPv3 and health checks. Nothing is
// implemented yet; the directory exists so the project layout is complete.
package director
