# Allocation-heavy Python with threads: the preload tests and benchmarks
# run it under glibc and vvmalloc. Prints one hash per thread and a total.
import hashlib, json, threading

def work(seed):
    # Dicts, lists, strings and bytes of many sizes, freed as they go.
    d = {}
    for i in range(60000):
        k = (i * 7919 + seed) % 5000
        d[k] = [str(i) * (i % 13), bytes(i % 3000), {"n": i}]
        if i % 3 == 0:
            d.pop((k * 31) % 5000, None)
    blob = json.dumps(sorted((k, len(v[0]), len(v[1])) for k, v in d.items()))
    return hashlib.sha256(blob.encode()).hexdigest()

results = [None] * 4
def run(t):
    results[t] = work(t)
threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print("\n".join(results))
big = [bytearray(1 << 20) for _ in range(40)]  # large and huge blocks
print(sum(len(b) for b in big))
