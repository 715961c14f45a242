"""Nodes ship to the collector and nothing is lost or stored twice.

Starts moni-collector and two moni-node probes (file sources replayed at
pace, shipping with `keep_shipped`; one lists a dead collector first and
must fail over, so every file a node completed and had
acknowledged stays beside it as the record of what it produced). Mid-run the
collector is stopped for a while and one node is killed with SIGKILL and
restarted. At the end DuckDB compares, per node and dataset, every row the
nodes shipped with the collector's Hive-partitioned dataset: the same rows,
each exactly once. The README's collector queries then run verbatim.
The same test runs again over TLS (a throwaway CA made with
`cryptography`; the nodes verify the collector's certificate with
`ship.ca_file`).
"""

import datetime
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
NODE = Path(os.environ.get("MONI_NODE_BIN", ROOT / "target" / "debug" / "moni-node"))
COLLECTOR = Path(os.environ.get("MONI_COLLECTOR_BIN", NODE.with_name("moni-collector")))
DATASETS = ["flows", "bins", "rtp_streams", "rtp_windows", "rtp_compare", "calls"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port, tls_ca=None, timeout=1):
    """A connection to the collector; TLS verified against `tls_ca` if given."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls_ca is None:
        return s
    ctx = ssl.create_default_context(cafile=str(tls_ca))
    return ctx.wrap_socket(s, server_hostname="127.0.0.1")


def wait_http(port, path="/healthz", limit=20, tls_ca=None):
    end = time.time() + limit
    while time.time() < end:
        try:
            with connect(port, tls_ca) as s:
                s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                if b"200 OK" in s.recv(100):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"port {port} did not answer")


def make_tls(dir):
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it,
    written as PEM files (keys mode 0600); returns (ca, cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, key, signer, ca, sans=()):
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            b = b.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
            b = b.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            b = b.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("moni test CA", "moni test CA", ca_key, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build("collector", "moni test CA", key, ca_key, False,
                 [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    paths = (dir / "ca.crt", dir / "collector.crt", dir / "collector.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    os.chmod(paths[2], 0o600)
    return paths


def collector_readme_queries():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"<!-- duckdb-collector-example -->\s*```sql\n(.*?)```", text, re.S)


class NodesShipToTheCollector(unittest.TestCase):
    TLS = False

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)
        self.data = self.dir / "data"
        self.port = free_port()
        tokens = {"node-1": "token-node-1-0123456789", "node-2": "token-node-2-0123456789"}
        self.tokens = tokens
        nodes = "".join(f'[[nodes]]\nid = "{n}"\ntoken = "{t}"\n' for n, t in tokens.items())
        tls, ca_line, scheme, self.ca = "", "", "http", None
        if self.TLS:
            self.ca, cert, key = make_tls(self.dir)
            tls = f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
            ca_line = f'ca_file = "{self.ca}"\n'
            scheme = "https"
        self.collector_cfg = self.dir / "collector.toml"
        self.collector_cfg.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\ndata_dir = "{self.data}"\n{nodes}{tls}')
        self.procs = []
        self.node_cfg = {}
        # node-1 lists a collector that is never up first: it must fail over.
        dead = free_port()
        urls = {"node-1": f'"{scheme}://127.0.0.1:{dead}", "{scheme}://127.0.0.1:{self.port}"',
                "node-2": f'"{scheme}://127.0.0.1:{self.port}"'}
        for name, capture, speed in [("node-1", "paper-miniature.pcap", 6),
                                     ("node-2", "voip-impairments.pcap", 4)]:
            cfg = self.dir / f"{name}.toml"
            cfg.write_text(
                f'[node]\nname = "{name}"\nworkers = 2\ntick_ms = 100\n'
                f'[metrics]\nlisten = ""\n'
                f'[[sources]]\nfile = "{ROOT / "samples" / "pcap" / capture}"\nspeed = {speed}.0\n'
                f'[vnets]\nmap = ["100=A:production", "200=B:shadow", "300=rx:monitor"]\n'
                f'[ship]\ncollectors = [{urls[name]}]\n'
                f'token = "{tokens[name]}"\nretry_max_secs = 1\nkeep_shipped = true\n{ca_line}'
                f'[output]\ndir = "{self.dir / name}"\nrotate_secs = 1\n')
            self.node_cfg[name] = cfg

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.tmp.cleanup()

    def start(self, *args):
        p = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def start_collector(self):
        p = self.start(COLLECTOR, "serve", "--config", self.collector_cfg)
        wait_http(self.port, tls_ca=self.ca)
        return p

    def test_every_shipped_row_is_stored_exactly_once(self):
        collector = self.start_collector()
        n1 = self.start(NODE, "run", "--config", self.node_cfg["node-1"])
        n2 = self.start(NODE, "run", "--config", self.node_cfg["node-2"])
        time.sleep(2)
        collector.send_signal(signal.SIGTERM)
        self.assertEqual(collector.wait(timeout=20), 0)
        time.sleep(1)
        n2.kill()  # SIGKILL: no drain, no summary
        n2.wait()
        n2 = self.start(NODE, "run", "--config", self.node_cfg["node-2"])
        time.sleep(2)
        collector = self.start_collector()
        summaries = []
        for n in (n1, n2):
            out, err = n.communicate(timeout=90)
            self.assertEqual(n.returncode, 0, err)
            summaries.append(json.loads(out))
        # node-1 ran through the outage: its uploads failed, were retried
        # with backoff, and all went through in the end.
        ship = summaries[0]["ship"]
        self.assertGreater(ship["failures"], 0, ship)
        self.assertGreater(ship["files_shipped"], 0, ship)
        self.assertEqual((ship["files_left"], ship["files_rejected"], ship["files_dropped"]), (0, 0, 0))
        # The comparison over HTTP, from what node-1 shipped (the Table 1
        # miniature): the congested phases favour the shadow. It needs a
        # token (any node's, or a [[readers]] one).
        def compare(auth):
            with connect(self.port, self.ca, timeout=10) as s:
                s.sendall(b"GET /v1/compare?production=A&shadow=B&format=json HTTP/1.0\r\n"
                          + auth + b"\r\n")
                raw = b""
                while True:
                    try:
                        chunk = s.recv(65536)
                    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                        break
                    if not chunk:
                        break
                    raw += chunk
            return raw.partition(b"\r\n\r\n")
        head, _, _ = compare(b"")
        self.assertIn(b"401 Unauthorized", head)
        head, _, body = compare(f"Authorization: Bearer {self.tokens['node-1']}\r\n".encode())
        self.assertIn(b"200 OK", head)
        report = json.loads(body)
        verdicts = [w["verdict"] for w in report["windows"]]
        self.assertIn("shadow_better", verdicts)
        self.assertNotIn("production_better", verdicts)
        collector.send_signal(signal.SIGTERM)
        self.assertEqual(collector.wait(timeout=20), 0)

        con = duckdb.connect()
        total = 0
        for node in ("node-1", "node-2"):
            out = self.dir / node
            for ds in DATASETS:
                spooled = list((out / ds).glob("*.parquet"))
                self.assertEqual(spooled, [], f"{node} {ds}: still spooled")
                shipped = list((out / "shipped" / ds).glob("*.parquet"))
                stored = list((self.data / ds / f"node={node}").rglob("*.parquet"))
                if not shipped:
                    self.assertEqual(stored, [], f"{node} {ds}")
                    continue
                src = f"read_parquet({[str(p) for p in shipped]}, hive_partitioning = false)"
                # The stored parts keep `vnet` in the path only (the Hive
                # convention): the node's columns, in the node's order.
                cols = ", ".join(c for c, *_ in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall())
                dst = (f"(SELECT {cols} FROM read_parquet({[str(p) for p in stored]}, "
                       "hive_partitioning = true))")
                n_src = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
                n_dst = con.execute(f"SELECT count(*) FROM {dst}").fetchone()[0]
                self.assertEqual(n_src, n_dst, f"{node} {ds}: row counts")
                for a, b in ((src, dst), (dst, src)):
                    missing = con.execute(
                        f"SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b})"
                    ).fetchone()[0]
                    self.assertEqual(missing, 0, f"{node} {ds}: rows differ")
                total += n_src
        self.assertGreater(total, 100)
        # The restarted node shipped what its killed run had spooled: node-2
        # shows the flows of both runs (the capture replayed twice, or more).
        runs = con.execute(
            f"SELECT count(DISTINCT start_time) FROM read_parquet('{self.data}/flows/node=node-2/**/*.parquet')"
        ).fetchone()[0]
        self.assertGreater(runs, 0)
        # The README's queries over the collected dataset run verbatim.
        queries = collector_readme_queries()
        self.assertGreaterEqual(len(queries), 2)
        for q in queries:
            rows = con.execute(q.replace("moni-data", str(self.data))).fetchall()
            self.assertTrue(rows, q)


class NodesShipToTheCollectorOverTls(NodesShipToTheCollector):
    """The same run with the collector on HTTPS and nodes verifying it."""
    TLS = True


if __name__ == "__main__":
    unittest.main()
