// A vendor's .NET EcTrans, as ybplug's Voucher calls it with backend = "dotnet" (see tests/test_dotnet.py):
//     public static int EcTrans(string inData, out string outData)
// inData is the spec's request JSON; outData the spec's reply, here byte for byte the spec's example
// (trailing comma included).  The idcode chooses a behaviour:
//     "refuse"   flag 0, cause 二维码已失效          "fail"     returns 5, cause 网络连接失败
//     "throw"    throws InvalidOperationException   "slow:MS"  sleeps MS milliseconds, then answers
//     "leak:..." flag 0 and a cause repeating the idcode, an ID number and a phone (ybplug masks them)
//     "throwleak:..." throws, its message repeating the idcode and a phone number
// anything else: the identity of 张三, with idNo the idcode's digits if any and insuOrg the districtNo.
// Compiled in the test run:  mcs -target:library -out:Voucher.dll Voucher.cs
using System;
using System.Text.RegularExpressions;
using System.Threading;

namespace Vendor.Certificate
{
    public static class EcTransApi
    {
        static int inFlight;

        public static int EcTrans(string inData, out string outData)
        {
            if (Interlocked.Increment(ref inFlight) > 1)
            {
                Interlocked.Decrement(ref inFlight);
                outData = "{\"flag\":\"0\",\"cause\":\"overlap\"}";
                return 0;
            }
            try
            {
                string idcode = Field(inData, "idcode");
                if (idcode == "refuse") { outData = "{\"flag\":\"0\",\"cause\":\"二维码已失效\",\"data\":null}"; return 0; }
                if (idcode == "fail") { outData = "{\"flag\":\"0\",\"cause\":\"网络连接失败\"}"; return 5; }
                if (idcode == "throw") throw new InvalidOperationException("证书服务不可用");
                if (idcode.StartsWith("leak:")) { outData = "{\"flag\":\"0\",\"cause\":\"无效的二维码:" + idcode + " 350204198001010001 13800138000\"}"; return 0; }
                if (idcode.StartsWith("throwleak:")) throw new InvalidOperationException("坏码 " + idcode + " 联系 13912345678");
                if (idcode.StartsWith("slow:")) Thread.Sleep(int.Parse(idcode.Substring(5)));
                string digits = Regex.Replace(idcode, "[^0-9]", "");
                outData = "{\n    \"flag\": \"1\",\n    \"cause\": \"\",\n    \"data\": {\n"
                    + "        \"ecToken\": \"398397485fkjdk9sf92j3mlkf\",\n"
                    + "        \"idNo\": \"" + (digits.Length > 0 ? digits : "350204198001010001") + "\",\n"
                    + "        \"idType\": \"01\",\n"
                    + "        \"userName\": \"张三\",\n"
                    + "        \"insuOrg\": \"" + Field(inData, "districtNo") + "\",\n"
                    + "        \"aaz500\": \"K001934831\",\n"
                    + "        \"id0000\": \"1010010101001\",\n"
                    + "    }\n}";
                return 0;
            }
            finally
            {
                Interlocked.Decrement(ref inFlight);
            }
        }

        static string Field(string json, string key)
        {
            Match m = Regex.Match(json, "\"" + key + "\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"");
            return m.Success ? Regex.Unescape(m.Groups[1].Value) : "";
        }
    }

    /// EcTrans in the wrong shape: an instance method without the out parameter.
    public class Legacy
    {
        public int EcTrans(string inData) { return 0; }
    }
}
