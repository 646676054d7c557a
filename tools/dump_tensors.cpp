// Dumps llama.cpp intermediate tensors (f32) to /tmp/dump/NAME.bin for comparison.
#include "llama.h"
#include "ggml.h"
#include "ggml-backend.h"
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>
#include <cstdlib>
#include <algorithm>

static bool cb(struct ggml_tensor * t, bool ask, void *) {
    if (ask) return true;
    if (t->type != GGML_TYPE_F32) return true;
    std::string name = t->name;
    for (auto & c : name) if (c == ' ' || c == '(' || c == ')') c = '_';
    size_t n = ggml_nbytes(t);
    std::vector<char> buf(n);
    ggml_backend_tensor_get(t, buf.data(), 0, n);
    if (!ggml_is_contiguous(t)) return true;
    std::string path = "/tmp/dump/" + name + ".bin";
    FILE * f = fopen(path.c_str(), "wb");
    if (f) { fwrite(buf.data(), 1, n, f); fclose(f); }
    return true;
}

int main(int argc, char ** argv) {
    if (argc < 3) { fprintf(stderr, "usage: dump MODEL id,id,...\n"); return 1; }
    llama_backend_init();
    auto mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    auto cp = llama_context_default_params();
    cp.n_ctx = 4096; cp.n_batch = 4096; cp.n_ubatch = 4096; cp.n_threads = 2; cp.n_threads_batch = 2;
    cp.cb_eval = cb; cp.cb_eval_user_data = nullptr;
    cp.flash_attn_type = getenv("FA") ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    llama_context * ctx = llama_init_from_model(model, cp);
    std::vector<llama_token> toks;
    char * s = argv[2];
    for (char * p = strtok(s, ","); p; p = strtok(nullptr, ",")) toks.push_back(atoi(p));
    int chunk = getenv("CHUNK") ? atoi(getenv("CHUNK")) : (int)toks.size();
    for (size_t pos = 0; pos < toks.size(); pos += chunk) {
        int n = std::min((int)(toks.size() - pos), chunk);
        llama_batch b = llama_batch_get_one(toks.data() + pos, n);
        if (llama_decode(ctx, b)) { fprintf(stderr, "decode failed\n"); return 1; }
    }
    float * logits = llama_get_logits_ith(ctx, -1);
    FILE * f = fopen("/tmp/dump/logits.bin", "wb"); fwrite(logits, 4, llama_vocab_n_tokens(llama_model_get_vocab(model)), f); fclose(f);
    return 0;
}
