// The draft's editor: saved as the radiologist types (so a reload or a second tab keeps the
// edit), each sentence's evidence shown when it is selected (and its place marked on the
// image), agreement per finding and device, and signing after a confirmation.
"use strict";
(function () {
  const root = document.getElementById("study");
  if (!root) return;
  const study = JSON.parse(root.dataset.study);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const editor = document.getElementById("editor");
  const state = document.getElementById("save-state");
  const evidence = document.getElementById("evidence");
  const list = document.getElementById("statements");

  function agreements() {
    const out = { findings: {}, devices: {} };
    for (const s of document.querySelectorAll("select.finding-agreement")) {
      if (s.value) out.findings[s.dataset.observation] = s.value === "agree";
    }
    for (const s of document.querySelectorAll("select.device-agreement")) {
      if (s.value) out.devices[s.dataset.device] = s.value;
    }
    return out;
  }

  let timer = null, saving = Promise.resolve(), dirty = false;
  function save() {
    dirty = false;
    const body = JSON.stringify({ text: editor.value, agreements: agreements() });
    saving = saving.then(async () => {
      state.textContent = "Saving…";
      try {
        const response = await fetch("/studies/" + encodeURIComponent(study.uid) + "/draft", {
          method: "POST",
          credentials: "same-origin",
          headers: { "content-type": "application/json", "x-csrf-token": csrf },
          body,
        });
        if (response.redirected) {
          state.textContent = "Not saved: your session has ended. Log in again in another tab; the edit stays here and is saved as you type.";
          state.dataset.saved = "false";
        } else if (response.ok) {
          const answer = await response.json();
          state.textContent = "Saved " + answer.saved;
          state.dataset.saved = "true";
        } else {
          state.textContent = "Not saved: " + (response.headers.get("x-error-message") || response.statusText);
          state.dataset.saved = "false";
        }
      } catch (error) {
        state.textContent = "Not saved (" + error.message + "): the edit stays here; it is saved again as you type.";
        state.dataset.saved = "false";
      }
    });
    return saving;
  }
  function changed() {
    dirty = true;
    state.dataset.saved = "false";
    state.textContent = "Editing…";
    clearTimeout(timer);
    timer = setTimeout(save, 500);
  }
  if (editor && study.editable) {
    editor.addEventListener("input", changed);
    for (const s of document.querySelectorAll("select.finding-agreement, select.device-agreement")) {
      s.addEventListener("change", changed);
    }
    window.addEventListener("beforeunload", (e) => { if (dirty) { save(); e.preventDefault(); } });
  }

  function show(index) {
    const s = study.statements[index];
    for (const li of list.children) li.classList.toggle("selected", Number(li.dataset.index) === index);
    evidence.replaceChildren();
    if (!s) {
      const p = document.createElement("p");
      p.className = "hint";
      p.textContent = "No sentence of the draft here: the radiologist's own words.";
      evidence.append(p);
      if (window.radassistViewer) window.radassistViewer.highlight([]);
      return;
    }
    const h = document.createElement("p");
    h.className = "evidence-of";
    h.textContent = s.section + ": " + s.text;
    const ul = document.createElement("ul");
    for (const e of s.evidence) {
      const li = document.createElement("li");
      li.textContent = e;
      ul.append(li);
    }
    if (!s.evidence.length) {
      const li = document.createElement("li");
      li.textContent = "No evidence recorded.";
      ul.append(li);
    }
    evidence.append(h, ul);
    if (window.radassistViewer) window.radassistViewer.highlight(s.points);
  }

  for (const li of list.children) {
    li.addEventListener("click", () => show(Number(li.dataset.index)));
    li.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { show(Number(li.dataset.index)); e.preventDefault(); } });
  }

  // The sentence under the caret, matched to the draft's sentences by its words.
  function sentenceAtCaret() {
    const text = editor.value, at = editor.selectionStart;
    const start = Math.max(text.lastIndexOf(".", at - 1), text.lastIndexOf("\n", at - 1)) + 1;
    let end = text.slice(at).search(/[.\n]/);
    end = end < 0 ? text.length : at + end + 1;
    const sentence = text.slice(start, end).trim().toLowerCase();
    if (!sentence) return -1;
    return study.statements.findIndex((s) => {
      const t = s.text.trim().toLowerCase();
      return t === sentence || t.includes(sentence) || sentence.includes(t.replace(/\.$/, ""));
    });
  }
  if (editor) {
    for (const type of ["click", "keyup", "select"]) {
      editor.addEventListener(type, () => show(sentenceAtCaret()));
    }
  }

  const sign = document.getElementById("sign");
  const dialog = document.getElementById("sign-dialog");
  if (sign && dialog) {
    const open = async () => {
      clearTimeout(timer);
      await save();
      document.getElementById("sign-text").value = editor.value;
      document.getElementById("sign-agreements").value = JSON.stringify(agreements());
      dialog.showModal();
      document.getElementById("sign-confirm").focus();
    };
    sign.addEventListener("click", open);
    document.getElementById("sign-cancel").addEventListener("click", () => dialog.close());
    document.addEventListener("keydown", (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key === "Enter") { e.preventDefault(); open(); }
    });
  }
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    const claim = document.getElementById("claim");
    if (e.key === "c" && claim) claim.click();
  });
})();
