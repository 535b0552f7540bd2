module meshfed.lab/istio

go 1.22.0

// Istio tags its releases without a "v", so the Go module proxy knows them only
// by pseudo-version: this is the commit of tag 1.22.1 (a1a76b8e75f8).
require istio.io/istio v0.0.0-20240601204907-a1a76b8e75f8

// Istio's own go.mod carries this replace; a wrapper module must repeat it.
replace github.com/imdario/mergo => github.com/imdario/mergo v0.3.5
