module meshfed.lab/spire

go 1.26.6

require github.com/spiffe/spire v1.15.3

// The proxy refuses ejbca-go-client-sdk v1.1.0 (403); v1.0.2 builds SPIRE's
// ejbca UpstreamAuthority plugin just as well.
replace github.com/Keyfactor/ejbca-go-client-sdk => github.com/Keyfactor/ejbca-go-client-sdk v1.0.2
