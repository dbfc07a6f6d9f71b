// NOT COMPILED HERE: a sample for Unity (C#), kept beside the C++ client (clients/cpp) and making
// the same calls; the test suite compiles and runs the C++ client only (docs/API.md, "C++ and Unity").
//
// Stubs: generate them from proto/atelier/v1/*.proto with Grpc.Tools (csharp_namespace Atelier.V1).
// Transport: Unity's HttpClient has no HTTP/2, so gRPC goes through Grpc.Net.Client with
// Cysharp's YetAnotherHttpHandler (or any HTTP/2 handler of your platform).
using System;
using System.Threading;
using System.Threading.Tasks;
using Atelier.V1;
using Cysharp.Net.Http;
using Grpc.Core;
using Grpc.Net.Client;
using UnityEngine;

public class AtelierGenerate : MonoBehaviour
{
    public string address = "http://127.0.0.1:50051";
    public string apiKey;  // atk_<key id>_<secret>; better read from the player's settings than the scene
    public string prompt = "a grinning cat face";
    public string style = "twemoji";  // one of ListModels' styles for the model
    public ulong seed = 7;
    public Renderer target;

    const int MaxResumes = 8;

    async void Start()
    {
        using var channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = new YetAnotherHttpHandler { Http2Only = true },
            MaxReceiveMessageSize = 256 * 1024 * 1024,  // a 1024x1024 raw RGBA image is 4 MiB
        });
        var client = new Generation.GenerationClient(channel);
        var auth = new Metadata { { "authorization", $"Bearer {apiKey}" } };
        var request = new GenerateRequest
        {
            Prompt = prompt, Style = style, Seeds = { seed },
            RequestId = Guid.NewGuid().ToString(),  // a retried Generate returns the same job
        };

        string jobId = "", lastEventId = "";
        for (var attempt = 0; ; attempt++)
        {
            using var call = jobId == ""
                ? client.Generate(request, auth)
                : client.Watch(new WatchRequest { JobId = jobId, AfterEventId = lastEventId }, auth);
            try
            {
                await foreach (var ev in call.ResponseStream.ReadAllAsync(destroyCancellationToken))
                {
                    jobId = ev.JobId;
                    lastEventId = ev.Id;  // resume after the last event handled
                    if (ev.Progress != null) Debug.Log($"step {ev.Progress.Step}/{ev.Progress.TotalSteps}");
                    if (ev.Artifact != null) Show(ev.Artifact.Data.ToByteArray());
                    if (ev.Finished != null)
                    {
                        Debug.Log($"{ev.Finished.State} {ev.Finished.ErrorMessage}");
                        return;
                    }
                }
            }
            catch (RpcException e) when ((e.StatusCode == StatusCode.Unavailable ||
                                          e.StatusCode == StatusCode.Cancelled) && attempt < MaxResumes)
            {
                Debug.Log($"stream dropped ({e.StatusCode}); resuming {jobId} after {lastEventId}");
            }
            await Task.Delay(TimeSpan.FromMilliseconds(200 << attempt), destroyCancellationToken);
        }
    }

    void Show(byte[] png)
    {
        var texture = new Texture2D(2, 2, TextureFormat.RGBA32, false);
        texture.LoadImage(png);  // PNG with straight alpha; for OUTPUT_FORMAT_RAW_RGBA8 see docs/API.md, "Images"
        target.material.mainTexture = texture;
    }
}
