module meshfed.lab/cert-manager

go 1.19

require github.com/cert-manager/cert-manager v1.11.5

// cert-manager's own go.mod carries this replace; a wrapper module must repeat it.
replace github.com/miekg/dns v1.1.41 => github.com/miekg/dns v1.1.34
