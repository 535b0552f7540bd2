module meshfed.lab/spire-controller-manager

go 1.26.5

require github.com/spiffe/spire-controller-manager v0.7.0
