// Package collect is `lvslab collect`: what a real director box knows of
// its own part in an LVS-DR pair, read on the box and kept in a bundle
// (a .tar.gz) that `lvslab diagnose` judges elsewhere.
//
// A bundle holds the keepalived config with its includes and scripts
// (secrets redacted in place, so file:line stays true), the kernel and
// keepalived versions, the IPVS and ARP sysctls, links, addresses, routes
// and neighbours, the iptables and nft rules, the IPVS table with its
// counters and sync daemons, and a live window: which VIPs the box held
// and how many packets each virtual service took, sampled. Collect
// changes nothing on the box.
package collect
