package hostlocal

import "github.com/containernetworking/cni/pkg/types"

// ReadResolvConf reads the DNS settings of the resolv.conf file at path, as
// ipam.resolvConf does: for other IPAM plugins that take the same field.
func ReadResolvConf(path string) (types.DNS, error) { return readResolvConf(path) }
