package clusteripam

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// prevResultAddrs returns the addresses of the prevResult in a CHECK
// config, and false when there is none. A prevResult that does not decode
// is code 6.
func prevResultAddrs(stdin []byte) ([]netip.Addr, bool, error) {
	var pc types.PluginConf
	if err := json.Unmarshal(stdin, &pc); err != nil {
		return nil, false, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("decode network config: %v", err), "")
	}
	if pc.RawPrevResult == nil {
		return nil, false, nil
	}
	if err := version.ParsePrevResult(&pc); err != nil {
		return nil, false, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
	}
	res, err := current.NewResultFromResult(pc.PrevResult)
	if err != nil {
		return nil, false, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
	}
	var out []netip.Addr
	for _, ipc := range res.IPs {
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			return nil, false, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult address %q is not an IP address", ipc.Address.String()), "")
		}
		out = append(out, a.Unmap())
	}
	return out, true, nil
}
