package scenarios

import (
	"fmt"
	"strings"
)

// Finding is something the kernel or keepalived did that a first
// expectation got wrong, how it was investigated, and what the suite does
// about it. The report shows them beside the matrix; Expected encodes the
// outcomes.
type Finding struct {
	Title string `json:"title"`
	Text  string `json:"text"`
}

// Findings are the investigated expectations, newest last.
var Findings = []Finding{
	{"A looping SYN fails the connect rather than hanging it",
		"Current kernels decrement the TTL when IPVS forwards in DR mode, so a SYN bouncing between the directors dies " +
			"after ~64 hops with ICMP time exceeded, and the client's connect fails with \"no route to host\" in " +
			"milliseconds. The kernel rate-limits those ICMP messages, so some SYNs vanish silently and their " +
			"connects time out instead. Failed and hung connections are a LOOP only beside positive loop evidence " +
			"(bounced segments, ICMP time exceeded, a passive box counting more than clients sent it); without it they are " +
			"UNSERVED, named by cause, never read as a loop."},
	{"IPVS publishes its counters every 2 s",
		"Per-service counters come from the rate estimator's timer (ip_vs_est.c), so a read right after the traffic " +
			"misses it. The observers read after one tick (2.2 s)."},
	{"A graceful stop leaves nothing to loop on",
		"A director stopped gracefully removes its VIP and IPVS rules, so even without a fix the failover is CLEAN."},
	{"A SIGKILLed MASTER keeps its VIP and answers ARP",
		"Its rules stay, and clients may still reach it: a mixed-pair failover counted 7 packets at the killed box's " +
			"service although nothing bounced. The passive box's IPVS counters are loop evidence only when the " +
			"bridge capture is missing or saw bounces."},
	{"backup_only does not guard a box whose director died as MASTER",
		"Its master sync daemon is a kernel thread and outlives the director; the new MASTER switches its own to " +
			"master, so no box runs a backup daemon and the old MASTER re-balances: LOOP in 9 of 9 runs, keepalived " +
			"and lvslab, and the suite checks both boxes list master daemons only. An early run before the capture " +
			"existed came out CLEAN once in 2; that was not reproduced."},
	{"lvs_sync_daemon without an instance stops all balancing",
		"keepalived then runs both sync daemons on both boxes from the start (sync id 0): under backup_only the " +
			"MASTER stops balancing too and serves every connection itself (20 of 20): NO-BALANCE, which the suite " +
			"expects for that form. The deprecated per-instance " +
			"lvs_sync_daemon_interface follows VRRP but with sync id 0."},
	{"REDIRECT races a switchover: never CLEAN",
		"keepalived runs notify scripts asynchronously, after the state change. Through a VRRP switchover the new " +
			"MASTER keeps its BACKUP-time REDIRECT rule for a while and serves every connection itself, and the old " +
			"MASTER balances without its REDIRECT rule until notify_backup adds it. lvslab run --repeat 6 " +
			"--cell vrrp-switchover/keepalived/redirect: UNSTABLE, NO-BALANCE in 4 of 6 runs (20 of 20 served by the " +
			"new MASTER) and LOOP in 2 (4 of 20 connections broken, once a segment bounced to TTL 0 with 35 packets " +
			"on the old MASTER's service). The cell stays out of the suite: its outcome is a race. Steady state waits " +
			"until the MASTER's rule is gone. Through a SIGKILL the fix is LOOP: the killed box never ran " +
			"notify_backup."},
	{"Three kernels, the same verdicts",
		"lvslab run --kernels bullseye,default,trixie (5.10.0-32, 6.1.0-57, 6.12.117): the headline cells come out " +
			"alike on each, LOOP without a fix (3-5 of 29-51 forwarded segments bounced to TTL 0 after 63 hops, 5 ICMP " +
			"time exceeded, 5 of 20 connections failed, 199-208 packets on the passive service), CLEAN with the fwmark " +
			"guard in steady state and through a SIGKILL (0 writes lost). What differs is around IPVS, not in it: " +
			"net.ipv4.vs has 26, 27 (+run_estimation) and 29 (+est_cpulist, est_nice: estimator kthreads) sysctls; " +
			"6.12 ships its modules as .ko.xz under usr/lib/modules and a zstd bzImage. ipvsadm shows Route, not Local, " +
			"for a realserver that is a local address on all three."},
	{"keepalived kept a VIP it should have dropped, for over 30 s, under parallel load",
		"Under backup_only, with five other labs beside it under TCG, a keepalived that had become MASTER at start " +
			"logged 'Master received advert ... higher priority' and then nothing for over 30 s, its VIP up beside " +
			"the MASTER's (2 of 9 full parallel runs; never with the sync cells alone). On that state change it " +
			"switches its IPVS sync daemons, and the kernel's start_sync_thread takes the RTNL lock, which other labs' " +
			"namespace teardown holds: the likely cause, not confirmed yet. Readiness now waits up to 90 s and a " +
			"failure reports each box's process stacks. The lvslab director drops the VIP on its VRRP loop and " +
			"switches sync daemons on a worker. Seen again after a heal, with no other lab running: advert-loss-50 " +
			"keepalived backup-only, repeated alone, in its third run the BACKUP that had taken the VIP logged the " +
			"MASTER's higher-priority advert and nothing else for 90 s, both boxes holding the VIP (ERROR); the only " +
			"other namespace work was the previous run's teardown, minutes before. The convergence after a heal now " +
			"waits 90 s too and reports the stacks; the cause is open."},
	{"Directors started together may both become MASTER for a moment",
		"Both time out as BACKUP after about 3.5 s and take the VIP until the higher priority's adverts are heard " +
			"(1.5 s once, with six scenarios on a loaded micro-VM). Under load this broke cells: a REDIRECT cell " +
			"found the BACKUP without its rule for 15 s (1 of 40 specs; keepalived's asynchronous notify scripts " +
			"racing that double transition is the likely cause, its logs were not kept), and the lvslab " +
			"director that yielded went on sending gratuitous ARP for the VIP, so the client sent traffic to the " +
			"BACKUP and 2 of 20 connections broke (fixed: announcements end with the VIP). Scenarios now start the " +
			"MASTER's director first and the other once it holds the VIP, as boxes in the field start seconds " +
			"apart; a scenario starts only when one box alone holds the VIP."},
	{"A SIGKILLed MASTER's connection entries can still loop a SYN past the fwmark guard",
		"IPVS looks a packet up in its connection table before it looks for a service, so the mark does not matter " +
			"to a packet that matches an entry. In DR a director sees only the client's side, and its state table " +
			"leaves a closed connection in FIN_WAIT for 2 minutes; net.ipv4.vs.conn_reuse_mode=1 (the default) " +
			"reschedules a new SYN only on TIME_WAIT or CLOSE entries. After a SIGKILL the old MASTER keeps its " +
			"entries from the writes it forwarded to the other box. When a later client connection reuses such a source " +
			"port and the new MASTER schedules it to the old one, the old one follows its entry back, and the new " +
			"MASTER follows the entry it just made: the SYN bounced 63 hops to ICMP time exceeded (bridge capture, " +
			"port 44750). Seen in 3 of 101 runs of failover-kill with the fwmark guard, the mark alone then (lvslab pair, in 3 of 10 " +
			"micro-VM boots; 0 of 16 with keepalived), so the cell stays expected CLEAN and can fail this way. " +
			"Made deterministic (scenarios/crashhole.go, BenchmarkIPVSCrashHole, the mark alone: fwmark-only): 40 client ports each " +
			"closed through the MASTER (half of them sent to the BACKUP, left in FIN_WAIT), the MASTER's director " +
			"SIGKILLed, the same ports reused once the BACKUP holds the VIP, a fresh lab per run, 15 runs. Of the 300 " +
			"ports the MASTER had sent to the BACKUP, 159 failed with keepalived, 141 with the lvslab director, 155 " +
			"with keepalived killed beside the lvslab director (about two thirds with no route to host, the ICMP time " +
			"exceeded of a SYN looped to TTL 0, the rest timed out, their ICMP rate-limited), the old MASTER counting " +
			"hundreds of packets a run; the other ports were served. conn_reuse_mode=3 was expected to close it " +
			"(is_new_conn_expected in ip_vs_core.c reschedules a SYN that finds a FIN_WAIT entry of a DR " +
			"connection): it does not here, 166 and 147 of 300 failed, 77 of 160 mixed (8 runs logged); after the reused SYN the old " +
			"MASTER's entry is the same one, to the same destination, in state SYN_SENT, a state IPVS's TCP tables " +
			"give a SYN only in the OUTPUT direction; why is open. What closes it is a nat PREROUTING REDIRECT of the " +
			"VIP traffic the other director forwards (-m mac --mac-source OTHER -j REDIRECT, beside the guard): its " +
			"destination is no longer the VIP when IPVS looks it up, so no stale entry can take it: 0 of 300 failed " +
			"with each implementation, every port served, the old MASTER counting nothing. Counted per run " +
			"(BenchmarkIPVSCrashHoleRate: rounds of six fresh labs at once, each one failover-kill with the 40 ports " +
			"reused; a run loops when a reused SYN ran out of TTL or a director sent ICMP time exceeded), the fwmark " +
			"fix with the REDIRECT looped in 0 of 300 runs with keepalived, 0 of 300 with the lvslab director and 0 of " +
			"300 with the mixed pair (one-sided 95% upper bound 0.99% each; two-sided interval 0 to 1.22%), 0 of the " +
			"6000 ports each the killed MASTER had sent to the BACKUP failed, and no lab failed the harness; " +
			"without the REDIRECT every run looped: the mark alone 30 of 30 with each implementation, backup_only " +
			"30 of 30 with keepalived and with the lvslab director (95% interval 88.4 to 100% each; " +
			"reports/bench/BENCH.md). Its cost: the box runs conntrack and nat " +
			"for that traffic, which reaches the service at the box's own address, not the VIP. It acts only on what the " +
			"MASTER already sent this box, so what the MASTER decides (its scheduler, persistence templates) stays as " +
			"it was; the field cases with persistence stay CLEAN with it (make field, 32 of 32 specs), and the " +
			"sub-second failover benchmark, which runs the fwmark fix with it, lost none of its acknowledged writes " +
			"in 612 failovers. lvslab check writes " +
			"it beside each guard, the lvslab director installs it by default (guard.redirect_peer), and the lab's fix " +
			"fwmark is the mark with it (fwmark-only: the mark alone). The conformance cells crash-reuse (the " +
			"same port reuse after the kill, judged like any run) show the hole with the mark alone and its absence " +
			"with the REDIRECT, for keepalived, the lvslab director and the mixed pair (reports/bench/pcap holds a capture " +
			"of each loop). Connections open across the failover lose nothing to it: of those the BACKUP served, 10 of 10 " +
			"answered after the takeover with the REDIRECT and without it, conntrack keeping its NAT; those the killed " +
			"MASTER served itself broke either way (0 of 10). Under backup_only and the sync daemon instead of the mark, " +
			"the same port reuse looped 5 of the 20 ports the killed MASTER had sent to the BACKUP in every one of 8 runs, " +
			"keepalived and the lvslab director alike (40 of 160); the new MASTER holds the sync daemon's copies of the " +
			"old one's entries, which mostly send a reused port where the old entry does (a reading, not measured). Three more " +
			"candidates, the mark alone, 8 runs each with keepalived and the lvslab director: expire_nodest_conn=1 changed " +
			"nothing (7 or 8 of the 20 to-peer ports looped a run), nor did expire_quiescent_template=1 (7 a run: the " +
			"service keeps no persistence templates, and the killed MASTER's weights stay); IPVS's FIN_WAIT timeout at 1 s (ipvsadm --set 0 1 0, " +
			"keepalived's lvs_timeouts tcpfin 1) closed it at 1 s adverts, 0 of 160 each, only because the stale " +
			"entries had expired by the reuse, about 3 s after the kill. With adverts every 50 ms the reuse comes within " +
			"the second (make bench BENCH_SETS=hole-fast, 8 runs each): the 1 s FIN_WAIT then closed nothing, 7 of " +
			"the 20 to-peer ports looped in every run with keepalived and with the lvslab director, while with the " +
			"REDIRECT none looped, 40 of 40 were served and the killed MASTER took in no packet in every run. (Its count " +
			"is read from IPVS's live per-CPU counters: those netlink reads are the estimator's, refreshed every 2 s, " +
			"and at 50 ms adverts they first showed up to 200 packets a run, the 40 connections of before the kill read " +
			"late.) A 1 s FIN_WAIT would also drop the entry " +
			"of any half-closed connection that lasts longer. The REDIRECT does not depend on timing: it stays the fix."},
	{"Under load, adverts under 200 ms let a BACKUP take the VIP from a live MASTER",
		"Expected: none (issue #24's target, double MASTERs 0). Measured with six labs at once on a 2-core TCG runner " +
			"(BenchmarkIPVSFailoverLoad: three lvslab director pairs, three keepalived pairs, writes every 50 ms, 5 s " +
			"with both directors up before each MASTER's SIGKILL): a BACKUP took the VIP from a live MASTER 37 times in " +
			"204 five-second windows at 20 ms adverts, 18 at 50 ms (9 with each implementation), 5 at 100 ms, and none " +
			"in 102 at 200 ms. RFC 5798's Master_Down_Interval is three adverts and a skew: a stall of the BACKUP's " +
			"clock or of the MASTER's sending longer than that (over 150 ms at 50 ms adverts) is a takeover, and " +
			"TCG under six labs stalls that long. Each ended with the MASTER alone holding the VIP again, and no acknowledged " +
			"write was lost at any interval. 200 ms is the shortest interval free of them on this runner; docs/director.md " +
			"says so."},
	{"After a split brain the clients return to the MASTER only if it hears the other box's advert first",
		"When VRRP heals, the box that became MASTER during the split brain (or while the MASTER was cut off) yields " +
			"at the first advert of the higher-priority MASTER; the MASTER re-announces the VIP (gratuitous ARP) only " +
			"if it hears a lower-priority advert first (RFC 5798 discards it; keepalived and the lvslab director both " +
			"answer it with an advert and gratuitous ARP). Which advert crosses first is the phase of the two timers " +
			"at the heal. The first version of these events healed at a fixed time after the BACKUP took the VIP, so " +
			"the phase followed each implementation's timing: keepalived's MASTER heard the other box in 6 of 6 runs " +
			"(its log: \"Received advert from 192.168.1.213 with lower priority 100, ours 150, forcing new " +
			"election\", then ARP) and the client came back; the lvslab BACKUP advertises just before it takes the " +
			"VIP, so its MASTER heard nothing in 6 of 6 and the client stayed with the old BACKUP (304 to 385 " +
			"segments a run reached it) until its ARP entry would age; with the MASTER isolated instead, keepalived's " +
			"clients stayed too in 2 of 4 runs. The events now heal just after the BACKUP's own advert (seen on the " +
			"bridge), the same phase for every implementation: the clients stay with the box that yielded. It still " +
			"balances (fwmark: CLEAN; no fix: LOOP), but under backup_only or REDIRECT, as BACKUP, it serves every " +
			"client itself: NO-BALANCE, not a loop. A MASTER that re-announces its VIPs now and then brings them " +
			"back (keepalived's vrrp_garp_master_refresh; the lvslab director's vrrp.garp_refresh, added for this): " +
			"at 2 s, split-brain lvslab backup-only was CLEAN in 4 of 4 runs, NO-BALANCE in 4 of 4 without. How long " +
			"the clients stay is their own neighbour timers': in one full run of the suite an isolated MASTER's clients " +
			"were back by the reads (lvslab, backup_only: CLEAN where NO-BALANCE was expected) and after a takeover under " +
			"50% advert loss a keepalived pair's stayed (NO-BALANCE where CLEAN was expected). Under backup_only or " +
			"REDIRECT these events now pass as CLEAN, or as NO-BALANCE when the capture saw the clients send to the " +
			"passive box."},
	{"Under backup_only a brief takeover removes the guard until the backup sync daemon is back",
		"With 30% of its adverts lost for 10 s the keepalived BACKUP took the VIP once (its log: Entering MASTER " +
			"STATE), then logged the MASTER's higher-priority advert and nothing else: when the traffic ended, " +
			"seconds after the heal, it ran no sync daemon at all, backup_only did not guard it, and the cell came " +
			"out LOOP (5 of 46 forwarded segments bounced). Likely cause, not shown: the backup daemon's start takes the kernel's RTNL lock, the " +
			"same wait the start-up of these cells already has (see the readiness finding). Convergence after an " +
			"adversity event under backup_only therefore includes the BACKUP's backup sync daemon running again, " +
			"as at start, and the verdict is on the pair after that. The lvslab director met the same wait once " +
			"(advert-loss-30, backup-only, in a full conformance run): stopping its master daemon waited 60 s on the " +
			"kernel and failed with EAGAIN, and it stayed without a backup daemon; it now retries every second and " +
			"follows the state the box is in, skipping the stale switches of a flap."},
	{"A takeover resets the connections whose segments reach the other box",
		"With 50% of its adverts lost the keepalived BACKUP of a fwmark pair took the VIP once; after the heal the " +
			"clients still sent 14 segments to it, and 2 of 20 connections came back closed (invalid connection) " +
			"with no loop evidence. A box without an entry for a connection does not schedule its non-SYN segments " +
			"(IPVS schedules SYNs only), and the box's own stack resets them. That is the takeover's cost on any " +
			"VRRP pair, not a loop and not the harness's: such connections are counted apart (moved_errors) when a " +
			"takeover happened and a complete capture saw clients at the passive box."},
	{"vrrp_strict drops the VIP's traffic, and accept does not undo it",
		"The sample keepalived.conf that RHEL-like packages install has vrrp_strict. In strict mode keepalived turns " +
			"Accept_Mode off and, as MASTER, adds an nftables set with the VIPs and a rule at input priority filter-1 that " +
			"drops their packets: before IPVS's LOCAL_IN hook, so no connection to a virtual service is served (20 of 20 " +
			"handshakes timed out, field case vrrp-strict). Adding accept to the instance was expected to undo it; keepalived " +
			"2.2.7 logs \"accept mode for VRRP version 2 does not comply with RFC3768 - resetting\" and drops the same. " +
			"lvslab check names the line, and its fix removes vrrp_strict."},
}

// FindingsMarkdown is docs/findings.md: Findings as a document, which a
// test keeps equal to it (LVSLAB_UPDATE_GOLDEN=1 rewrites it).
func FindingsMarkdown() string {
	var b strings.Builder
	b.WriteString("# Findings\n\n<!-- Generated from scenarios/findings.go (go test ./scenarios -run TestFindingsDoc, LVSLAB_UPDATE_GOLDEN=1): edit the code, not this file. -->\n\n" +
		"What the kernel or keepalived did that a first expectation got wrong, how it was investigated, and what the suite does about it, oldest first. Each report shows them beside its matrix.\n")
	for _, f := range Findings {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n", f.Title, f.Text)
	}
	return b.String()
}
