// A hospital's local code in C#, hosted by ybplug's .NET bridge (see tests/test_dotnet.py).
//
// Hook methods are named On + the hook's name in CamelCase and take one string: the hook's
// arguments as JSON with the spec's wire names, e.g. for collection_result
//   {"birth": {"akc190": ..., "bkee30": "陈静之女", ...}, "result": {"flag": 1, "baz726": "XSE...", ...},
//    "birth_id": 7, "event_id": "..."}
// Compiled in the test run:  mcs -target:library -out:HospitalPlugin.dll HospitalPlugin.cs
using System;
using System.IO;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;

namespace StMary.Ybplug
{
    /// The HIS's local writes: one tab-separated line per delivered event in his-store.tsv beside
    /// the assembly (a stand-in for the HIS database), idempotent on event_id as ybplug asks.
    public class HisPlugin
    {
        static readonly object Gate = new object();
        static int inFlight;

        public static string StorePath
        {
            get { return Path.Combine(Path.GetDirectoryName(typeof(HisPlugin).Assembly.Location), "his-store.tsv"); }
        }

        public void OnBirthRecorded(string json)
        {
            Write("birth_recorded", json, "");
        }

        public void OnCollectionResult(string json)
        {
            string flag = Json.Field(json, "flag");
            Write("collection_result", json, flag == "1" ? Json.Field(json, "baz726") : "refused:" + Json.Field(json, "cause"));
        }

        // Not a hook: ybplug leaves it alone.
        public int Lines()
        {
            return File.Exists(StorePath) ? File.ReadAllLines(StorePath).Length : 0;
        }

        void Write(string hook, string json, string registration)
        {
            // Calls overlapping in time would show as in_flight > 1: ybplug makes every call from one thread.
            int now = Interlocked.Increment(ref inFlight);
            try
            {
                Thread.Sleep(2); // a database round trip
                string eventId = Json.Field(json, "event_id");
                if (string.IsNullOrEmpty(eventId)) throw new ArgumentException("no event_id in " + hook);
                string line = string.Join("\t", new[] {
                    hook, eventId, Json.Field(json, "birth_id"), registration, Json.Field(json, "bkee30"),
                    now.ToString(), Thread.CurrentThread.ManagedThreadId.ToString(),
                });
                lock (Gate)
                {
                    if (File.Exists(StorePath))
                        foreach (string existing in File.ReadAllLines(StorePath, Encoding.UTF8))
                            if (existing.Split('\t')[1] == eventId) return; // delivered again: already written
                    File.AppendAllText(StorePath, line + "\n", new UTF8Encoding(false));
                }
            }
            finally
            {
                Interlocked.Decrement(ref inFlight);
            }
        }
    }

    /// Answers QR decoding itself (a firstresult hook): static methods, no constructor needed.
    public static class FrontDesk
    {
        public static string OnYbplugDecodeQr(string json)
        {
            if (json.Contains("\"host\"")) throw new InvalidOperationException("the host must not be sent");
            string idcode = Json.Field(json, "idcode");
            if (idcode.StartsWith("other:")) return null; // not mine: the next plugin answers
            return "{\"ecToken\": \"tok-" + idcode + "\", \"idNo\": \"350204198001010001\", \"idType\": \"01\", "
                + "\"userName\": \"张三\", \"insuOrg\": \"" + Json.Field(json, "districtNo") + "\"}";
        }
    }

    /// The HIS database is down: every delivery throws.
    public class DownPlugin
    {
        public void OnCollectionResult(string json)
        {
            throw new InvalidOperationException("HIS database is down");
        }
    }

    /// A hook method of the wrong shape.
    public class WrongShape
    {
        public void OnCollectionResult(int birthId) { }
    }

    /// No hook at all.
    public class NoHooks
    {
        public void Save(string json) { }
    }

    static class Json
    {
        // Enough JSON for a test: the first value of "key" anywhere in the text (string, number or null).
        public static string Field(string json, string key)
        {
            Match m = Regex.Match(json, "\"" + Regex.Escape(key) + "\"\\s*:\\s*(?:\"((?:[^\"\\\\]|\\\\.)*)\"|(-?[0-9.]+)|null)");
            if (!m.Success) return "";
            return m.Groups[1].Success ? Regex.Unescape(m.Groups[1].Value) : m.Groups[2].Value;
        }
    }
}
