// Fundus review: the viewer (zoom, pan, brightness, contrast, the heatmap
// overlay), the claim's keep-alive, and the keyboard. Plain JavaScript, no
// build step; the pages work without it, only less conveniently.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

  // Photos come through the session: fetched, then shown from a blob URL.
  async function load(img, url) {
    const r = await fetch(url, { credentials: "same-origin" });
    if (!r.ok) throw new Error(url + ": " + r.status);
    img.src = URL.createObjectURL(await r.blob());
    return r;
  }

  document.querySelectorAll("img.thumb[data-src]").forEach((img) => load(img, img.dataset.src).catch(() => {}));

  const viewport = document.getElementById("viewport");
  const view = { scale: 1, x: 0, y: 0, brightness: 100, contrast: 100, heatmap: false, opacity: 60, full: false };

  if (viewport) {
    const stage = document.getElementById("stage");
    const photo = document.getElementById("photo");
    const heat = document.getElementById("heatmap");
    const bright = document.getElementById("brightness");
    const contrast = document.getElementById("contrast");
    const opacity = document.getElementById("heatmap-opacity");

    // The heatmap covers the square the model saw: x,y,w,h as fractions,
    // from the heatmap itself when it says (the disc's square), else from
    // the preview (the field's).
    function place(header) {
      if (!heat || !header) return;
      const box = header.split(",").map(Number);
      heat.style.left = box[0] * 100 + "%";
      heat.style.top = box[1] * 100 + "%";
      heat.style.width = box[2] * 100 + "%";
      heat.style.height = box[3] * 100 + "%";
      heat.dataset.box = header;
    }
    load(photo, viewport.dataset.preview).then((r) => {
      photo.dataset.loaded = "preview";
      if (heat && !heat.dataset.own) place(r.headers.get("x-fundus-heatmap-box") || "0,0,1,1");
    }).catch((e) => { viewport.dataset.error = String(e); });

    function apply() {
      stage.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
      photo.style.filter = `brightness(${view.brightness}%) contrast(${view.contrast}%)`;
      if (heat) {
        heat.classList.toggle("hidden", !view.heatmap);
        heat.style.opacity = view.opacity / 100;
      }
      if (bright) bright.value = view.brightness;
      if (contrast) contrast.value = view.contrast;
      viewport.dataset.scale = view.scale.toFixed(2);
      // Full resolution only once someone zooms in.
      if (view.scale > 1.5 && !view.full) {
        view.full = true;
        const full = new Image();
        load(full, viewport.dataset.full).then(() => {
          full.onload = () => { photo.src = full.src; photo.dataset.loaded = "full"; };
        }).catch(() => { view.full = false; });
      }
    }

    const act = {
      "zoom-in": () => { view.scale = Math.min(view.scale * 1.25, 12); },
      "zoom-out": () => { view.scale = Math.max(view.scale / 1.25, 1); if (view.scale === 1) { view.x = 0; view.y = 0; } },
      reset: () => { Object.assign(view, { scale: 1, x: 0, y: 0, brightness: 100, contrast: 100 }); },
      heatmap: () => {
        if (!heat) return;
        if (!heat.dataset.loaded) {
          heat.dataset.loaded = "1";
          load(heat, heat.dataset.src).then((r) => {
            const own = r.headers.get("x-fundus-heatmap-box");
            if (own) { heat.dataset.own = "1"; place(own); }
          }).catch(() => { delete heat.dataset.loaded; });
        }
        view.heatmap = !view.heatmap;
      },
    };
    document.querySelectorAll("[data-act]").forEach((b) =>
      b.addEventListener("click", () => { act[b.dataset.act](); apply(); }));
    bright?.addEventListener("input", () => { view.brightness = +bright.value; apply(); });
    contrast?.addEventListener("input", () => { view.contrast = +contrast.value; apply(); });
    opacity?.addEventListener("input", () => { view.opacity = +opacity.value; apply(); });

    // Pan by dragging, zoom with the wheel.
    let drag = null;
    viewport.addEventListener("pointerdown", (e) => { drag = { x: e.clientX - view.x, y: e.clientY - view.y }; viewport.setPointerCapture(e.pointerId); });
    viewport.addEventListener("pointermove", (e) => { if (drag && view.scale > 1) { view.x = e.clientX - drag.x; view.y = e.clientY - drag.y; apply(); } });
    viewport.addEventListener("pointerup", () => { drag = null; });
    viewport.addEventListener("wheel", (e) => { e.preventDefault(); act[e.deltaY < 0 ? "zoom-in" : "zoom-out"](); apply(); }, { passive: false });

    // Keep the claim while the page is open.
    if (viewport.dataset.claim === "1") {
      const item = viewport.dataset.item;
      setInterval(() => {
        fetch(`/v1/review/items/${item}/claim`, { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
      }, 4 * 60 * 1000);
    }

    const pan = 60;
    const keys = {
      "+": act["zoom-in"], "=": act["zoom-in"], "-": act["zoom-out"], "0": act.reset, h: act.heatmap,
      ArrowLeft: () => { view.x += pan; }, ArrowRight: () => { view.x -= pan; },
      ArrowUp: () => { view.y += pan; }, ArrowDown: () => { view.y -= pan; },
      "[": () => { view.brightness = Math.max(50, view.brightness - 10); }, "]": () => { view.brightness = Math.min(200, view.brightness + 10); },
      "{": () => { view.contrast = Math.max(50, view.contrast - 10); }, "}": () => { view.contrast = Math.min(200, view.contrast + 10); },
    };
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey || isTyping(e.target)) return;
      const f = keys[e.key];
      if (f) { e.preventDefault(); f(); apply(); }
    });
    apply();
  }

  function isTyping(el) {
    return el && (el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && !["radio", "range", "checkbox"].includes(el.type)) || el.isContentEditable);
  }

  // Deciding and moving on, from anywhere on the page.
  const form = document.getElementById("decision");
  const choices = { r: "referable", n: "not_referable", u: "ungradable:retake", e: "ungradable:examine" };
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || isTyping(e.target)) return;
    if (form && choices[e.key]) {
      const radio = form.querySelector(`input[name="choice"][value="${choices[e.key]}"]`);
      if (radio) { radio.checked = true; radio.focus(); e.preventDefault(); }
    } else if (form && e.key === "Enter") {
      e.preventDefault();
      form.requestSubmit();
    } else if (e.key === "j") {
      e.preventDefault();
      document.getElementById("next-form")?.requestSubmit();
    } else if (e.key === "w") {
      window.location.href = "/review/";
    }
  });
})();
