"""dsv4 chat: Ctrl-C during a reply stops the reply, not the program. Usage: test_chat_interrupt.py DSV4_CLI"""
import os
import signal
import subprocess
import sys
import time

cli = sys.argv[1]
p = subprocess.Popen([cli, "chat", "--greedy", "-n", "2000", "--context", "16384"], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
os.set_blocking(p.stdout.fileno(), False)
p.stdin.write(b"def add(a, b):\n")
p.stdin.flush()
got = b""
deadline = time.time() + 60
while len(got) < 200 and time.time() < deadline:  # the reply is under way
    chunk = p.stdout.read()
    if chunk:
        got += chunk
    time.sleep(0.01)
assert len(got) >= 200, "no reply within 60 s"
p.send_signal(signal.SIGINT)
time.sleep(0.5)
assert p.poll() is None, "Ctrl-C during a reply ended the program"
os.set_blocking(p.stdout.fileno(), True)
rest, err = p.communicate(input=b"second turn\n/exit\n", timeout=600)
assert p.returncode == 0, (p.returncode, err)
assert b"[stopped]" in err, err
print("PASS: reply stopped after", len(got), "bytes; the chat went on and exited cleanly")
