const q=document.getElementById('q'),wl=document.getElementById('wl'),ff=document.getElementById('failed'),
      dis=document.getElementById('disagree'),fl=document.getElementById('flipped'),
      un=document.getElementById('unstable');
function apply(){const t=q.value.toLowerCase();let n=0;
for(const r of document.querySelectorAll('tr.case')){
 const ok=(!wl.value||r.dataset.wl===wl.value)&&(!ff.checked||r.dataset.failed==='1')
   &&(!dis.checked||r.dataset.disagree==='1')&&(!fl||!fl.checked||r.dataset.flipped==='1')
   &&(!un||!un.checked||r.dataset.unstable==='1')
   &&(!t||r.textContent.toLowerCase().includes(t));
 r.style.display=ok?'':'none';if(ok)n++;}
document.getElementById('shown').textContent=n;}
[q,wl,ff,dis,fl,un].forEach(e=>e&&['input','change'].forEach(k=>e.addEventListener(k,apply)));apply();
