module meshfed.lab/istio

go 1.26.0

// The proxy serves istio.io/istio only by pseudo-version. It refuses the
// commits of the 1.30.x tags (403); the release-1.30 commit it serves
// (9739e10eb9d7) and the 1.31-dev one (b01690e6db7d) need modules the
// checksum database has no entry for (404). This master commit of 2026-08-27
// (eed52ebb66ad, VERSION 1.32) is the newest it serves whose dependencies
// all verify. See docs/lab.md.
require istio.io/istio v0.0.0-20260827124520-eed52ebb66ad
