"""What the benchmarks share: free loopback ports, a SeaweedFS server, the
delay proxy in front of it, and stopping everything they started.

Everything binds 127.0.0.1 on free ports; `Servers.stop_all` ends every
process group started through `Servers.start`.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# The kOps state-store fixtures, vendored in the repository.
FIXTURES = os.path.join(ROOT, "examples", "state")
ACCESS, SECRET = "kopsci-bench-access", "kopsci-bench-secret"


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_http(port, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer: the server is up
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on 127.0.0.1:{port}")


class Servers:
    """SeaweedFS and the delay proxy. `args` carries `weed`, `aws`, `proxy`
    and `delay_ms`; `strip` names the environment prefixes the tools under
    test must not inherit."""

    def __init__(self, args, work, strip=("AWS_", "S3_", "KOPS")):
        self.args = args
        self.work = work
        self.procs = []
        self.weed_ports = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(strip))}
        self.env.update({"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET,
                         "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                         "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})

    def start(self, cmd, **kw):
        p = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        # SeaweedFS leaves gRPC sockets named by port in /tmp.
        for port in self.weed_ports:
            for name in os.listdir("/tmp"):
                if name.startswith("seaweedfs-") and name.endswith(f"-{port}.sock"):
                    try:
                        os.remove(os.path.join("/tmp", name))
                    except OSError:
                        pass

    def aws_cmd(self, port, *rest):
        return [self.args.aws, "--endpoint-url", f"http://127.0.0.1:{port}", *rest]

    def start_weed(self):
        p = free_ports(10)
        data = os.path.join(self.work, "weed")
        os.makedirs(data)
        log = open(os.path.join(self.work, "weed.log"), "wb")
        self.weed = self.start([self.args.weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                                f"-master.port={p[0]}", f"-volume.port={p[1]}", f"-filer.port={p[2]}",
                                f"-s3.port={p[3]}", f"-master.port.grpc={p[4]}", f"-volume.port.grpc={p[5]}",
                                f"-filer.port.grpc={p[6]}", f"-s3.port.grpc={p[7]}", f"-admin.port={p[8]}",
                                f"-admin.port.grpc={p[9]}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                                "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
                                f"-filer.localSocket={data}/filer.sock", f"-s3.localSocket={data}/s3.sock"],
                               env=self.env, stdout=log, stderr=log, cwd=data)
        self.s3_port = p[3]
        self.weed_ports = p
        wait_http(self.s3_port)
        end = time.time() + 60
        while subprocess.run(self.aws_cmd(self.s3_port, "s3", "ls"), env=self.env,
                             capture_output=True).returncode != 0:
            if time.time() > end:
                raise SystemExit("SeaweedFS never became ready; see " + os.path.join(self.work, "weed.log"))
            time.sleep(0.2)

    def server_cpu_ms(self):
        """CPU time SeaweedFS has used so far (user + system), in ms."""
        with open(f"/proc/{self.weed.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")

    def seed(self, bucket, src):
        subprocess.run(self.aws_cmd(self.s3_port, "s3", "mb", f"s3://{bucket}"), env=self.env,
                       check=True, capture_output=True)
        subprocess.run(self.aws_cmd(self.s3_port, "s3", "cp", "--recursive", "--only-show-errors",
                                    src, f"s3://{bucket}/"), env=self.env, check=True)

    def start_proxy(self):
        (port,) = free_ports(1)
        p = self.start([self.args.proxy, str(port), str(self.s3_port), str(self.args.delay_ms)],
                       stdout=subprocess.PIPE)
        if p.stdout.readline().strip() != b"ready":
            raise SystemExit("delay proxy did not start")
        self.proxy_port = port
