module meshfed.lab/spire

go 1.19

require github.com/spiffe/spire v1.5.1
