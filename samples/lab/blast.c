/* blast: the lab's minimum-size frame sender (lab.py probe-effect).
 *
 * Kernel pktgen is the usual tool, but its module is not on every kernel
 * (nor on the CI's), so this is the smallest stand-in: one AF_PACKET raw
 * socket, the same UDP/IPv4 frame sent in batches of 256 with sendmmsg(2)
 * as fast as the path takes them, for a given number of seconds. A frame the path refuses (its next hop's
 * input is full) is counted and the sender goes on, never fatal. Frames pass the device's egress tc
 * hook (no PACKET_QDISC_BYPASS): the lab's monitoring port is a tc
 * mirred there.
 *
 *   blast IFACE DST_MAC SRC_IP DST_IP SECS [FRAME_BYTES]
 *
 * FRAME_BYTES (default 64) is the frame as handed to the device, i.e. as
 * a capture shows it (the FCS is not part of it on a veth). Prints one
 * JSON line: {"sent": N, "refused": N, "secs": S}.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 256

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static unsigned short csum(const void *p, int len) {
    const unsigned short *w = p;
    unsigned long s = 0;
    for (; len > 1; len -= 2) s += *w++;
    if (len) s += *(const unsigned char *)w;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (unsigned short)~s;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: blast IFACE DST_MAC SRC_IP DST_IP SECS [FRAME_BYTES]\n");
        return 2;
    }
    int size = argc > 6 ? atoi(argv[6]) : 64;
    if (size < 42 || size > 1514) {
        fprintf(stderr, "blast: FRAME_BYTES must be 42-1514\n");
        return 2;
    }
    double secs = atof(argv[5]);
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) { perror("blast: socket"); return 1; }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) { perror("blast: SIOCGIFINDEX"); return 1; }
    int ifindex = ifr.ifr_ifindex;
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) { perror("blast: SIOCGIFHWADDR"); return 1; }

    unsigned char frame[1514];
    memset(frame, 0, sizeof frame);
    struct ether_header *eth = (struct ether_header *)frame;
    unsigned int m[6];
    if (sscanf(argv[2], "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) {
        fprintf(stderr, "blast: bad MAC %s\n", argv[2]);
        return 2;
    }
    for (int i = 0; i < 6; i++) eth->ether_dhost[i] = (unsigned char)m[i];
    memcpy(eth->ether_shost, ifr.ifr_hwaddr.sa_data, 6);
    eth->ether_type = htons(ETHERTYPE_IP);
    struct iphdr *ip = (struct iphdr *)(frame + 14);
    ip->version = 4;
    ip->ihl = 5;
    ip->tot_len = htons(size - 14);
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    if (inet_pton(AF_INET, argv[3], &ip->saddr) != 1 || inet_pton(AF_INET, argv[4], &ip->daddr) != 1) {
        fprintf(stderr, "blast: bad address\n");
        return 2;
    }
    ip->check = csum(ip, 20);
    struct udphdr *udp = (struct udphdr *)(frame + 34);
    udp->source = htons(9);
    udp->dest = htons(9); /* discard */
    udp->len = htons(size - 34);

    struct sockaddr_ll to;
    memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET;
    to.sll_ifindex = ifindex;
    to.sll_halen = 6;
    memcpy(to.sll_addr, eth->ether_dhost, 6);
    struct iovec iov = {frame, (size_t)size};
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_name = &to;
        msgs[i].msg_hdr.msg_namelen = sizeof to;
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    /* sendmmsg stops at the first frame the device refuses (a full
     * input ring of the next hop: "Virtual device asks to queue packet",
     * ENETDOWN; or ENOBUFS) and reports the frames before it; the refused
     * one is lost, as on a wire into a full NIC. Counted: offered = sent
     * + refused. */
    unsigned long long sent = 0, refused = 0;
    double t0 = now(), end = t0 + secs;
    while (now() < end) {
        int n = sendmmsg(fd, msgs, BATCH, 0);
        if (n == BATCH) {
            sent += BATCH;
        } else if (n >= 0) {
            sent += (unsigned long long)n;
            refused++;
        } else if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR || errno == ENETDOWN) {
            refused++;
        } else {
            perror("blast: sendmmsg");
            return 1;
        }
    }
    printf("{\"sent\": %llu, \"refused\": %llu, \"secs\": %.3f}\n", sent, refused, now() - t0);
    return 0;
}
